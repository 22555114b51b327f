// The rxserve/operators entry: the operators only (they are exported from 'rxserve' too).
export { modelRunner, type ModelRunnerConfig } from './modelRunner.js';
export { selectModels, type Selection } from './selectModels.js';
export { router, type RouterConfig } from './router.js';
export { step, type StepFn, type StepOptions, type StepContext } from './step.js';
export { onError, type ErrorHandler } from './onError.js';
export { modelRouter, type ModelRouterConfig } from './modelRouter.js';
export { parallelRun, type ParallelRunConfig } from './parallelRun.js';
export { votingEnsemble, type VotingEnsembleConfig } from './votingEnsemble.js';
export type { VoteType } from './internal/vote.js';
export { remoteStep, type RemoteStepOptions, type Backoff } from './remoteStep.js';
export { batchHttpRequests, type BatchHttpRequestsOptions } from './batchHttpRequests.js';
export type { HttpStepOptions } from './internal/http.js';

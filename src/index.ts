// The rxserve root entry: the whole public API, operators included (as RxJS 7.2+ does).
export * from './operators/index.js';
export {
  toEvent,
  asEvents,
  isServingEvent,
  isErrored,
  withBody,
  withError,
  withoutError,
  getPath,
  hasPath,
  setPath,
  type ServingEvent,
  type ErroredEvent,
  type PartialResult,
  type PartialSink,
} from './event.js';
export {
  RxServeError,
  ConfigError,
  ModelLoadError,
  ModelRunnerError,
  SelectorError,
  RouteNotFoundError,
  CycleLimitError,
  ModelTimeoutError,
  ModelNotReadyError,
  QueueFullError,
  WorkerCrashedError,
  ProviderError,
  RemoteStepError,
  type ConfigIssue,
  type ProviderErrorOptions,
  type ServingError,
} from './errors.js';
export { Model, type ModelClass, type ModelInit, type ModelMetadata, type ModuleRef, type PredictContext } from './model/model.js';
export type { ModelArtifact, LLMPromptArtifact } from './model/artifact.js';
export { registerModel, unregisterModel, type ModelClassRef } from './model/registry.js';
export type { Batching, ExecutionMechanism, CreationStrategy, ModelEntry } from './model/entry.js';
export {
  ModelSelector,
  registerSelector,
  unregisterSelector,
  type SelectorFn,
  type SelectorLike,
  type SelectorResult,
  type ModelSelectorClass,
} from './selector.js';
export type { Executor, ExecutorSession, ExecutorHooks, CallResult } from './execution/executor.js';
export type { GraphRef } from './execution/provider.js';
export {
  createGraph,
  type Graph,
  type EndpointInfo,
  type GraphOptions,
  type SharedModelConfig,
  type SharedModelProxyConfig,
} from './graph/graph.js';
export type { EndpointRecord } from './monitoring/record.js';
export type { EndpointRegistry, EndpointEntry, EndpointSpec } from './monitoring/endpointRegistry.js';
export { prometheusExporter, type PrometheusExporter } from './monitoring/prometheus.js';
export { traceGraph } from './monitoring/tracing.js';
// What graph.describe(), laneStats(), stepStats() and flowStats() return. The dashboard's stream
// payload (AggregatesSnapshot, EndpointFigures, SeriesPoint in monitoring/aggregates.ts) is the
// page's own wire format, not exported.
export type { LaneStats, StepStats, GraphShape, FlowShape, FlowStepStats } from './monitoring/monitor.js';
export type { PoolOptions } from './execution/poolOptions.js';
export { LLModel, type LLMResult, type LLMUsageReport, type LLMStreamEvent } from './llm/llmodel.js';
export { OnnxModel, type OnnxRequest, type OnnxResponse } from './onnx/onnxModel.js';
export type { OipTensor, ExpectedInput } from './onnx/tensor.js';
export type { OipDatatype } from './onnx/datatypes.js';
export { modelArtifact, llmPromptArtifact, loadArtifact, isPromptArtifact } from './model/artifact.js';
// Token counting, prompt filling, the provider contract and the undici fetch: `rxserve/llm`.
export type { Usage } from './llm/usage.js';
export type { ChatMessage } from './llm/prompt.js';
export {
  invoker,
  serve,
  rxservePlugin,
  v2ModelName,
  type Invoker,
  type InvokerOptions,
  type InvokeInit,
  type Server,
  type ServeOptions,
  type RxservePluginOptions,
  type StreamMessage,
  type OpenAIFrontOptions,
} from './serve/index.js';
export { loadGraph, type LoadGraphOptions, type LoadedGraph } from './spec/load.js';
export {
  flow,
  type Flow,
  type FlowStep,
  type FlowOptions,
  type FlowStepOptions,
  type FlowAddOptions,
  type FlowErrorHandlerOptions,
  type FlowStepOperator,
} from './flow/flow.js';
export { choice, choiceByField, type Choice, type ChoiceFn, type ChoiceResult } from './flow/choice.js';

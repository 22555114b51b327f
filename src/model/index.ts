// The rxserve/model entry: what a model module needs (the Model base class and its types), and
// nothing else — no RxJS, no io-ts, no pools. A worker thread or process that loads a model
// module importing 'rxserve' pays for the whole root entry (~190 ms on the bench machine); one
// importing 'rxserve/model' pays for this file and the error classes.
export { Model, type ModelClass, type ModelInit, type ModelMetadata, type ModuleRef, type PredictContext } from './model.js';
export type { LLMPromptArtifact, ModelArtifact } from './artifact.js';

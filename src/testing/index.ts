// The rxserve/testing entry: helpers for marble-testing pipelines.
export { testExecutor, type TestExecutor, type TestModel, type TestCall, type TestBatch } from './testExecutor.js';
export { bodies, stripTimings } from './events.js';
export { startLLMServer, type LLMServer, type LLMServerFault, type LLMServerOptions, type LLMServerRequest } from './llmServer.js';

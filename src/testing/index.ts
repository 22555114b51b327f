// The rxserve/testing entry: helpers for marble-testing pipelines.
export { testExecutor, type TestExecutor, type TestModel, type TestCall } from './testExecutor.js';
export { bodies, stripTimings } from './events.js';

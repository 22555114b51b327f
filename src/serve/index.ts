// Serving a pipeline: request/response (invoker) and the HTTP front (serve, rxservePlugin), docs/design.md §11.
export { invoker, type Invoker, type InvokerOptions, type InvokeInit, type StreamMessage } from './invoker.js';
export { serve, type Server, type ServeOptions } from './serve.js';
export { rxservePlugin, type RxservePluginOptions } from './plugin.js';
export { v2ModelName } from './v2.js';
export { type OpenAIFrontOptions } from './openai.js';

// The rxserve/llm entry: helpers for LLM users beside LLModel (which is in the root entry):
// token counting and estimates, prompt filling, the provider contract, and the undici fetch.
export { estimateUsage, countTextTokens, type Usage } from './usage.js';
export { buildMessages, type ChatMessage } from './prompt.js';
export type { CallerPolicy } from './invocation.js';
export type { LLMProvider, ProviderRequest, Completion, StreamPart } from './providers/contract.js';
export { createNodeFetch, type NodeFetchOptions } from './nodeFetch.js';

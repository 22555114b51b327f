// 'openai://<model>': the official openai client, any OpenAI-compatible base URL.
import OpenAI from 'openai';
import { ProviderError, toError } from '../../errors.js';
import { retryAfterMs } from '../../retry.js';
import { fetchHeaders, headerRecord } from '../../undici.js';
import { globalDispatcherFetch, globalDispatcherSender, nodeFetchSender, sharedNodeFetch, type Send } from '../nodeFetch.js';
import { SSEParser } from './sseParser.js';
import { estimateUsage, type Usage } from '../usage.js';
import type { Completion, LLMProvider, ProviderRequest, StreamPart } from './contract.js';

export class OpenAIProvider implements LLMProvider {
  readonly name = 'openai';
  private readonly client: OpenAI;
  /** How streamed answers are sent and read as Node streams: the transport's sender, or per call (default transport) the global dispatcher's when that is sound. */
  private readonly sender: () => Send | undefined;

  constructor(
    readonly model: string,
    options: { apiKey?: string; baseURL?: string; transport?: 'dispatcher' | 'fetch' | 'node-http' },
  ) {
    const transport = options.transport ?? 'dispatcher';
    // maxRetries 0: rxserve retries (bounded, before the first token), so retries never stack.
    this.client = new OpenAI({
      apiKey: options.apiKey ?? process.env.OPENAI_API_KEY,
      ...((options.baseURL ?? process.env.OPENAI_BASE_URL) ? { baseURL: options.baseURL ?? process.env.OPENAI_BASE_URL } : {}),
      maxRetries: 0,
      ...(transport === 'node-http' ? { fetch: sharedNodeFetch() } : transport === 'dispatcher' ? { fetch: globalDispatcherFetch } : {}),
    });
    const own = transport === 'node-http' ? nodeFetchSender(sharedNodeFetch()) : undefined;
    this.sender = transport === 'dispatcher' ? globalDispatcherSender : () => own;
  }

  async invoke({ messages, config, signal }: ProviderRequest): Promise<Completion> {
    let response: OpenAI.Chat.Completions.ChatCompletion;
    try {
      response = await this.client.chat.completions.create(
        { ...config, model: this.model, messages: messages as OpenAI.Chat.ChatCompletionMessageParam[], stream: false },
        { signal },
      );
    } catch (error) {
      throw toProviderError(error, signal);
    }
    if (!Array.isArray(response?.choices) || response.choices.length === 0) {
      throw new ProviderError(`openai '${this.model}': the response has no choices`, 200, false);
    }
    if (response.choices.length > 1) {
      throw new ProviderError(
        `openai '${this.model}': the response has ${response.choices.length} choices; LLModel takes one (n: 1)`,
        200,
        false,
      );
    }
    const answer = response.choices[0].message?.content ?? '';
    // OpenAI's usage object is passed through whole (with its *_tokens_details).
    const usage: Usage = response.usage ? { ...response.usage } : estimateUsage(messages, answer);
    return { answer, usage };
  }

  /**
   * Streams one answer. The request is the openai client's own (`buildRequest`: URL, auth and
   * its headers), sent straight to the transport — undici's `request()` on the global dispatcher
   * (default) or on the `'node-http'` pool, whose Node stream is read without a `Response`, or the
   * global `fetch` (`transport: 'fetch'`, or when the global fetch has been replaced) — and its event stream is parsed here per network read by `SSEParser`. The client's
   * `create({ stream: true })` path (its request machinery, its `Stream`'s generators) costs
   * several times more CPU per token and ~0.5 ms more before the first one. What it yields and
   * throws is what that path gives: `{ delta }` per content chunk, `{ usage }` when the server
   * sends it; `[DONE]` ends the answer; an HTTP error is the client's `APIError` for its status, a
   * failed connection its `APIConnectionError`, an `{ error }` event its `APIError` (then mapped
   * by `toProviderError`).
   */
  async *stream({ messages, config, signal }: ProviderRequest): AsyncIterable<StreamPart> {
    const body = {
      ...config,
      model: this.model,
      messages: messages as OpenAI.Chat.ChatCompletionMessageParam[],
      stream: true,
      stream_options: { include_usage: true },
    };
    let source: ByteSource;
    try {
      source = await this.openStream(body, signal);
    } catch (error) {
      throw toProviderError(error, signal);
    }
    const parser = new SSEParser();
    let finished = false;
    let done = false;
    try {
      while (!done) {
        const read = await source.read();
        const events = read.done ? parser.end() : parser.push(read.value);
        done = read.done === true;
        for (const event of events) {
          if (finished) continue; // after [DONE]: read to the end, as the client does
          if (event.data.startsWith('[DONE]')) {
            finished = true;
            continue;
          }
          const chunk = JSON.parse(event.data) as OpenAI.Chat.Completions.ChatCompletionChunk & { error?: unknown };
          if (chunk?.error) throw new OpenAI.APIError(undefined, chunk.error, undefined, source.headers());
          const delta = chunk.choices?.[0]?.delta?.content;
          if (delta) yield { delta };
          if (chunk.usage) yield { usage: { ...chunk.usage } };
        }
      }
    } catch (error) {
      throw toProviderError(error, signal);
    } finally {
      // Stopped early (the consumer returned, or a failure): release the connection.
      if (!done) source.cancel();
    }
  }

  /**
   * The URL and headers of a streamed completion request, as the client builds them (`buildRequest`:
   * base URL, auth, its user agent and platform headers). They are the same for every call — the
   * API key is a string fixed at construction, the retry count is 0 (rxserve retries) — so they
   * are built once: building them per call cost ~0.2 ms before each first token. A client that
   * adds a per-request header (an idempotency key) has them built per call.
   */
  private head: RequestHead | undefined;

  private async requestHead(): Promise<RequestHead> {
    const { req, url } = await this.client.buildRequest({ method: 'post', path: '/chat/completions', body: {} });
    const head: RequestHead = { url: new URL(url), headers: headerRecord(req.headers) };
    if (!Object.keys(head.headers).some((name) => name.includes('idempotency'))) this.head = head;
    return head;
  }

  /** Sends the streaming request; the answer's bytes once its status is 2xx, else the client's error. */
  private async openStream(body: object, signal: AbortSignal | undefined): Promise<ByteSource> {
    const { url, headers } = this.head ?? (await this.requestHead());
    const text = JSON.stringify(body);
    const failed = (error: unknown): never => {
      if (signal?.aborted) throw signal.reason;
      throw new OpenAI.APIConnectionError({ cause: toError(error) });
    };
    const send = this.sender();
    if (send !== undefined) {
      const res = await send(url, { method: 'POST', headers, body: text, signal, redirect: 'follow' }).catch(failed);
      // A fetch `Headers` only for an error (building one costs more than the first token's parse).
      const responseHeaders = () => fetchHeaders(res.headers);
      if (res.statusCode < 200 || res.statusCode > 299) {
        throw statusError(res.statusCode, await bodyText(res.body).catch((e: unknown) => toError(e).message), responseHeaders());
      }
      const chunks = res.body[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
      return { headers: responseHeaders, read: () => chunks.next(), cancel: () => void res.body.destroy() };
    }
    const response = await fetch(url, { method: 'POST', headers, body: text, signal }).catch(failed);
    if (!response.ok) throw statusError(response.status, await response.text().catch((e: unknown) => toError(e).message), response.headers);
    if (response.body === null)
      throw new ProviderError(`openai '${this.model}': the streamed response has no body`, response.status, false);
    const reader = response.body.getReader();
    return { headers: () => response.headers, read: () => reader.read(), cancel: () => void reader.cancel().catch(() => undefined) };
  }
}

/** A streamed completion request's URL and headers (lower-case names), as undici sends them. */
interface RequestHead {
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
}

/** A Node stream's text (not the body's own `text()`: the global dispatcher may be any undici's). */
async function bodyText(body: AsyncIterable<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

/** An answer's bytes, read one network read at a time. */
interface ByteSource {
  /** The response's headers (for an `APIError`), built when asked. */
  headers(): Headers;
  read(): Promise<IteratorResult<Uint8Array>>;
  cancel(): void;
}

/** The openai client's error for an HTTP error status (as its own requests make it). */
function statusError(status: number, text: string, headers: Headers): Error {
  let json: object | undefined;
  try {
    json = JSON.parse(text) as object;
  } catch {
    json = undefined;
  }
  return OpenAI.APIError.generate(status, json, json === undefined ? text : undefined, headers);
}

/** Maps the openai client's errors to ProviderError (status, retryable, retry-after). */
export function toProviderError(error: unknown, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (error instanceof ProviderError) return error;
  if (error instanceof OpenAI.APIUserAbortError) return error;
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return new ProviderError(`openai: the request timed out`, undefined, true, { cause: error, timedOut: true });
  }
  if (error instanceof OpenAI.APIConnectionError) {
    return new ProviderError(`openai: connection failed (${connectionCause(error)})`, undefined, true, { cause: error });
  }
  if (error instanceof OpenAI.APIError && typeof error.status === 'number') {
    const status = error.status;
    const retryable = status === 408 || status === 409 || status === 429 || status >= 500;
    const retryAfterMs = retryAfter(error.headers);
    const header = headerOf(error.headers, 'retry-after');
    return new ProviderError(`openai: HTTP ${status}: ${error.message}`, status, retryable, {
      cause: error,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      ...(header != null ? { retryAfter: header } : {}),
      ...(status === 408 || status === 504 ? { timedOut: true } : {}),
    });
  }
  const e = toError(error);
  if (e instanceof SyntaxError || /JSON/i.test(e.message)) {
    return new ProviderError(`openai: malformed response (${e.message})`, undefined, false, { cause: error });
  }
  if (/terminated|socket|ECONNRESET|other side closed/i.test(e.message)) {
    return new ProviderError(`openai: connection dropped (${e.message})`, undefined, true, { cause: error });
  }
  return new ProviderError(`openai: ${e.message}`, undefined, false, { cause: error });
}

function connectionCause(error: Error): string {
  const cause = (error as { cause?: { message?: string; code?: string } }).cause;
  return cause?.code ?? cause?.message ?? error.message;
}

/** A header of an error's response (the client gives a `Headers`, or a plain object). */
function headerOf(headers: unknown, name: string): string | null | undefined {
  return typeof (headers as Headers | undefined)?.get === 'function'
    ? (headers as Headers).get(name)
    : (headers as Record<string, string> | undefined)?.[name];
}

function retryAfter(headers: unknown): number | undefined {
  return retryAfterMs((name) => headerOf(headers, name));
}

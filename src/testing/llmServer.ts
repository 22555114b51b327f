// A loopback HTTP server speaking the OpenAI Chat Completions wire format (JSON and SSE streams,
// with usage) and Hugging Face's chat-completion and text-generation endpoints, with faults.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { countTextTokens, renderChat } from '../llm/usage.js';
import type { ChatMessage } from '../llm/prompt.js';

/** A fault applied to the next matching requests. */
export interface LLMServerFault {
  /** Only requests whose path contains this (default: every request). */
  readonly path?: string;
  /** How many requests it applies to; default 1, `Infinity` for all. */
  readonly times?: number;
  /** Answer with this HTTP status and an OpenAI-style error body. */
  readonly status?: number;
  /** Extra response headers (e.g. `{ 'retry-after': '0' }`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Wait before answering. */
  readonly delayMs?: number;
  /** Close the connection: before any response (0), or after this many stream chunks. */
  readonly dropAfterChunks?: number;
  /** Answer 200 with a body that is not valid JSON. */
  readonly malformed?: boolean;
}

/** A request the server received. */
export interface LLMServerRequest {
  readonly path: string;
  readonly body: Record<string, unknown>;
  readonly authorization?: string;
  /** The request's headers as node received them (lower-case names). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface LLMServerOptions {
  /** Added before every answer (and spread over stream chunks); default 0. */
  readonly latencyMs?: number;
  /** The answer text for a request; default `'<model> says: <last message>'`. */
  readonly answer?: (request: { model: string; messages?: readonly ChatMessage[]; prompt?: string }) => string;
}

export interface LLMServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** For the openai client's `baseURL` (`<url>/v1`). */
  readonly openaiBaseURL: string;
  /** For a Hugging Face model's `providerOptions.baseURL` (`<url>/hf`). */
  readonly huggingfaceURL: string;
  /** Every request received, in order. */
  readonly requests: readonly LLMServerRequest[];
  /** Queues a fault for the next matching requests. */
  fault(fault: LLMServerFault): void;
  clearFaults(): void;
  close(): Promise<void>;
}

/**
 * Starts the loopback LLM server on 127.0.0.1 (a free port). Routes:
 * `POST /v1/chat/completions` (OpenAI; `stream: true` gives SSE, with a usage chunk when
 * `stream_options.include_usage`), `POST /hf/v1/chat/completions` (Hugging Face chat
 * completion, with usage) and `POST /hf/v1/completions` (Hugging Face text generation, no usage).
 * Token counts come from a BPE tokenizer, so they are plausible, not a provider's.
 *
 * ## Example
 * ```ts
 * import OpenAI from 'openai';
 * import { startLLMServer } from 'rxserve/testing';
 * const server = await startLLMServer();
 * const client = new OpenAI({ apiKey: 'test', baseURL: server.openaiBaseURL });
 * server.fault({ status: 429, headers: { 'retry-after': '0' } }); // the next request gets a 429
 * // ...
 * await server.close();
 * ```
 */
export async function startLLMServer(options: LLMServerOptions = {}): Promise<LLMServer> {
  const requests: LLMServerRequest[] = [];
  const faults: { fault: LLMServerFault; left: number }[] = [];
  const latency = options.latencyMs ?? 0;
  const answerFor =
    options.answer ?? (({ model, messages, prompt }) => `${model} says: ${messages?.at(-1)?.content ?? prompt ?? ''}`.trim());
  let completions = 0;

  const takeFault = (path: string): LLMServerFault | undefined => {
    const index = faults.findIndex((f) => f.left > 0 && (f.fault.path === undefined || path.includes(f.fault.path)));
    if (index < 0) return undefined;
    const entry = faults[index];
    entry.left--;
    if (entry.left <= 0) faults.splice(index, 1);
    return entry.fault;
  };

  const server = createServer((req, res) => {
    void handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const raw = await readBody(req);
    let body: Record<string, unknown>;
    try {
      body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
    } catch {
      return sendError(res, 400, 'invalid JSON body');
    }
    requests.push({ path, body, headers: req.headers, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    const fault = takeFault(path);
    if (fault?.delayMs) await sleep(fault.delayMs);
    if (fault?.dropAfterChunks === 0) return void req.socket.destroy();
    if (fault?.status !== undefined) return sendError(res, fault.status, `injected fault ${fault.status}`, fault.headers);
    if (latency > 0 && !body.stream) await sleep(latency);
    if (fault?.malformed) {
      res.writeHead(200, { 'content-type': 'application/json', ...fault.headers });
      return void res.end('{"id": "broken", "choices": [{"message": ');
    }
    const model = typeof body.model === 'string' ? body.model : 'unknown-model';
    const id = `cmpl-${++completions}`;
    const created = Math.floor(Date.now() / 1000);

    if (path === '/v1/chat/completions' || path === '/hf/v1/chat/completions') {
      const messages = Array.isArray(body.messages) ? (body.messages as ChatMessage[]) : [];
      const answer = answerFor({ model, messages });
      const usage = openAIUsage(countTextTokens(renderChat(messages)), countTextTokens(answer));
      if (body.stream) {
        const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
        return stream(res, { id, created, model, answer, usage: includeUsage ? usage : undefined, latency, fault });
      }
      res.writeHead(200, { 'content-type': 'application/json', ...fault?.headers });
      return void res.end(
        JSON.stringify({
          id: `chat${id}`,
          object: 'chat.completion',
          created,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: answer, refusal: null }, logprobs: null, finish_reason: 'stop' }],
          usage,
          system_fingerprint: 'fp_rxserve_loopback',
        }),
      );
    }
    if (path === '/hf/v1/completions') {
      const prompt = typeof body.prompt === 'string' ? body.prompt : '';
      const answer = answerFor({ model, prompt });
      res.writeHead(200, { 'content-type': 'application/json', ...fault?.headers });
      // As a text-generation endpoint: the text, and no usage.
      return void res.end(
        JSON.stringify({
          id,
          object: 'text_completion',
          created,
          model,
          choices: [{ index: 0, text: answer, finish_reason: 'stop', logprobs: null }],
        }),
      );
    }
    return sendError(res, 404, `no route for ${req.method} ${path}`);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    openaiBaseURL: `${url}/v1`,
    huggingfaceURL: `${url}/hf`,
    requests,
    fault(fault) {
      faults.push({ fault, left: fault.times ?? 1 });
    },
    clearFaults() {
      faults.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function openAIUsage(prompt: number, completion: number) {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
}

async function stream(
  res: ServerResponse,
  s: { id: string; created: number; model: string; answer: string; usage?: object; latency: number; fault?: LLMServerFault },
): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', ...s.fault?.headers });
  const pieces = s.answer.match(/\S+\s*/g) ?? [''];
  const chunk = (delta: object, finish: string | null = null, extra: object = {}) =>
    `data: ${JSON.stringify({
      id: `chat${s.id}`,
      object: 'chat.completion.chunk',
      created: s.created,
      model: s.model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...extra,
    })}\n\n`;
  const perChunk = s.latency / (pieces.length + 1);
  // Each write is flushed before the next step, so a drop happens after what was sent arrived.
  const write = (data: string) => new Promise<void>((resolve) => res.write(data, () => resolve()));
  await write(chunk({ role: 'assistant', content: '' }));
  let sent = 0;
  for (const piece of pieces) {
    if (perChunk > 0) await sleep(perChunk);
    if (s.fault?.dropAfterChunks !== undefined && sent >= s.fault.dropAfterChunks) {
      await sleep(20); // let the client read what was sent
      res.socket?.destroy();
      return;
    }
    await write(chunk({ content: piece }));
    sent++;
  }
  res.write(chunk({}, 'stop'));
  if (s.usage) {
    res.write(
      `data: ${JSON.stringify({ id: `chat${s.id}`, object: 'chat.completion.chunk', created: s.created, model: s.model, choices: [], usage: s.usage })}\n\n`,
    );
  }
  res.end('data: [DONE]\n\n');
}

function sendError(res: ServerResponse, status: number, message: string, headers?: Readonly<Record<string, string>>): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(
    JSON.stringify({
      error: { message, type: status === 429 ? 'rate_limit_exceeded' : 'server_error', param: null, code: String(status) },
    }),
  );
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// The OpenAI-compatible front (docs/design.md §15): POST /v1/chat/completions (JSON and SSE) and
// GET /v1/models over named LLModel endpoints, answered through the whole pipeline.
// Over 300 lines: one wire format's request translation, JSON answer and SSE chunks; the chunking is
// the part to split out if it grows.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { describeError, toError } from '../errors.js';
import { getPath, hasPath, type PartialSink, type ServingEvent } from '../event.js';
import { samplingFieldProblem } from '../llm/invocation.js';
import type { AnswerTo, CancelRequest, InvokeInit } from './invoker.js';
import { ClientWatch, EventStream, jsonOrUndefined, sseFrame, type StreamLimits } from './sse.js';
import { refusalStatus, retryAfterOf, sendJson, statusOf } from './status.js';
import { closeIfUnread } from './unread.js';

/** `serve({ openai })`: which endpoints OpenAI clients may call, by the model name they use. */
export interface OpenAIFrontOptions {
  /** Public model name (what clients send as `model`) → the LLModel endpoint name that answers it. */
  readonly models: Readonly<Record<string, string>>;
}

/**
 * The request fields the front reads itself; every other one goes to the endpoint in
 * `invocationConfig`, where the LLModel takes the sampling fields and refuses the rest unless its
 * entry lists them in `params.overridable` (docs/design.md §10).
 */
const FRONT_FIELDS = new Set(['model', 'messages', 'metadata', 'stream', 'stream_options', 'n']);

/** An error in OpenAI's shape, with its HTTP status. */
class OpenAIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly type: string,
    readonly code: string | null,
    readonly param: string | null = null,
  ) {
    super(message);
  }

  /** Sent as `Retry-After` (a 503's `1`, a provider's own with its 429). */
  retryAfter: string | undefined;

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A request the invoker refused: closing (503, unavailable) or its id already in flight (409, conflict). */
function refused(error: unknown, closing: boolean): OpenAIError {
  const status = refusalStatus(closing);
  return status === 503
    ? new OpenAIError(describeError(error), 503, 'server_error', 'unavailable')
    : new OpenAIError(describeError(error), 409, 'invalid_request_error', 'conflict');
}

/**
 * An errored event's error in OpenAI's shape, with the status of §11 (an LLM provider's failure
 * keeps its meaning: 429, 502, 504; §10). A refused field names itself in `param` (the
 * `TypeError` an LLModel throws for a caller's field carries it, inside a `ModelRunnerError` too).
 */
function fromServingError(error: Error): OpenAIError {
  const status = statusOf(error);
  const param = paramOf(error) ?? paramOf((error as { cause?: unknown }).cause);
  const [type, code] =
    status === 429
      ? ['requests', 'rate_limit_exceeded']
      : status === 404
        ? ['not_found_error', error.name]
        : status >= 500
          ? ['server_error', status === 504 ? 'timeout' : status === 503 ? 'overloaded' : status === 502 ? 'upstream_error' : error.name]
          : ['invalid_request_error', error.name];
  const e = new OpenAIError(describeError(error), status, type, code, param ?? null);
  e.retryAfter = retryAfterOf(error, status);
  return e;
}

function paramOf(error: unknown): string | undefined {
  const param = (error as { param?: unknown } | null | undefined)?.param;
  return typeof param === 'string' ? param : undefined;
}

interface ChatRequest {
  readonly model: string;
  readonly endpoint: string;
  readonly messages: readonly unknown[];
  readonly metadata: Record<string, unknown>;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly config: Record<string, unknown>;
}

/** Checks a chat completion request; the error names the field that was wrong. */
function parseChatRequest(body: unknown, models: Readonly<Record<string, string>>): ChatRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new OpenAIError('the request body must be a JSON object', 400, 'invalid_request_error', null);
  }
  const b = body as Record<string, unknown>;
  if (typeof b.model !== 'string' || b.model.length === 0) {
    throw new OpenAIError("'model' is required: a string naming one of the served models", 400, 'invalid_request_error', null, 'model');
  }
  if (!Object.hasOwn(models, b.model)) {
    const known = Object.keys(models);
    throw new OpenAIError(
      `The model '${b.model}' does not exist; models: ${known.length ? known.map((n) => `'${n}'`).join(', ') : '(none)'}`,
      404,
      'invalid_request_error',
      'model_not_found',
      'model',
    );
  }
  if (
    !Array.isArray(b.messages) ||
    b.messages.some((m) => m === null || typeof m !== 'object' || typeof (m as { role?: unknown }).role !== 'string')
  ) {
    throw new OpenAIError("'messages' must be an array of { role, content } objects", 400, 'invalid_request_error', null, 'messages');
  }
  if (b.metadata !== undefined && (b.metadata === null || typeof b.metadata !== 'object' || Array.isArray(b.metadata))) {
    throw new OpenAIError(
      "'metadata' must be an object (it fills the prompt's placeholders)",
      400,
      'invalid_request_error',
      null,
      'metadata',
    );
  }
  if (b.stream !== undefined && typeof b.stream !== 'boolean') {
    throw new OpenAIError("'stream' must be a boolean", 400, 'invalid_request_error', null, 'stream');
  }
  if (b.n !== undefined && b.n !== null && b.n !== 1) {
    throw new OpenAIError("'n' must be 1: one choice per request", 400, 'invalid_request_error', null, 'n');
  }
  if (
    b.stream_options !== undefined &&
    b.stream_options !== null &&
    (typeof b.stream_options !== 'object' || Array.isArray(b.stream_options))
  ) {
    throw new OpenAIError("'stream_options' must be an object ({ include_usage })", 400, 'invalid_request_error', null, 'stream_options');
  }
  // One pass over the request's fields: sampling fields are checked here, so a wrong one is a 400
  // before any work; the endpoint decides on the others.
  const config: Record<string, unknown> = {};
  for (const field in b) {
    if (!Object.hasOwn(b, field) || FRONT_FIELDS.has(field)) continue;
    const value = b[field];
    if (value === undefined || value === null) continue;
    const problem = samplingFieldProblem(field, value);
    if (problem !== undefined) throw new OpenAIError(`'${field}' ${problem}`, 400, 'invalid_request_error', null, field);
    config[field] = value;
  }
  const options = b.stream_options as { include_usage?: unknown } | null | undefined;
  return {
    model: b.model,
    endpoint: models[b.model],
    messages: b.messages,
    metadata: (b.metadata as Record<string, unknown> | undefined) ?? {},
    stream: b.stream === true,
    includeUsage: options?.include_usage === true,
    config,
  };
}

interface LLMAnswer {
  readonly answer: string;
  readonly usage?: Record<string, unknown>;
}

const isAnswer = (v: unknown): v is LLMAnswer =>
  v !== null && typeof v === 'object' && typeof (v as { answer?: unknown }).answer === 'string';

/** Where an endpoint's output is in its step's output body (from the graph). */
export interface AnswerPlace {
  readonly resultPath?: string;
  readonly merged?: boolean;
}

/**
 * The `{ answer, usage }` of `endpoint` in an output body, looked up only where its step writes
 * it: under the endpoint's name when its step merges several models, at its `resultPath` when it
 * has one. Nowhere else: the request's own fields (its `metadata`) are in the body too.
 */
export function findAnswer(body: unknown, endpoint: string, place: AnswerPlace = {}): LLMAnswer | undefined {
  let output = body;
  if (place.merged === true) {
    if (body === null || typeof body !== 'object' || !Object.hasOwn(body, endpoint)) return undefined;
    output = (body as Record<string, unknown>)[endpoint];
  }
  if (place.resultPath !== undefined) output = hasPath(output, place.resultPath) ? getPath(output, place.resultPath) : undefined;
  return isAnswer(output) ? output : undefined;
}

/** The model error of a merged body (`{ [endpoint]: { error } }`, raiseException off), if any. */
function modelError(body: unknown, endpoint: string): string | undefined {
  if (body === null || typeof body !== 'object') return undefined;
  const own = (body as Record<string, unknown>)[endpoint] ?? body;
  const error = (own as { error?: unknown } | null)?.error;
  return typeof error === 'string' ? error : undefined;
}

function openAIUsage(usage: Record<string, unknown> | undefined): Record<string, unknown> {
  const u = usage ?? {};
  const out: Record<string, unknown> = {
    prompt_tokens: u.prompt_tokens ?? 0,
    completion_tokens: u.completion_tokens ?? 0,
    total_tokens: u.total_tokens ?? Number(u.prompt_tokens ?? 0) + Number(u.completion_tokens ?? 0),
  };
  if (u.prompt_tokens_details !== undefined) out.prompt_tokens_details = u.prompt_tokens_details;
  if (u.completion_tokens_details !== undefined) out.completion_tokens_details = u.completion_tokens_details;
  return out;
}

/** The answer of an output event, or the OpenAI error to send instead. */
function answerOf(event: ServingEvent, endpoint: string, place: AnswerPlace | undefined): LLMAnswer | OpenAIError {
  if (event.error !== undefined) return fromServingError(event.error);
  const answer = findAnswer(event.body, endpoint, place);
  if (answer !== undefined) return answer;
  const error = modelError(event.body, endpoint);
  if (error !== undefined) return new OpenAIError(error, 400, 'invalid_request_error', 'model_error');
  return new OpenAIError(
    `endpoint '${endpoint}' gave no { answer } (is it an LLModel, and does the pipeline's selector pick it for body.model?)`,
    500,
    'server_error',
    null,
  );
}

/** How the routes reach the pipeline. */
export interface OpenAIRouteContext {
  /** The invoker's callback entry (see `RouteInvoker.begin`). */
  readonly begin: (body: unknown, init: InvokeInit, answer: AnswerTo, partials?: PartialSink) => CancelRequest;
  readonly closing: () => boolean;
  /** Where an endpoint's answer is (the graph's record of it); undefined for a name it does not know. */
  readonly place: (endpoint: string) => AnswerPlace | undefined;
  /** How long an answer may wait on a client that does not read it, and how much a stream keeps unsent. */
  readonly streamLimits: StreamLimits;
}

/**
 * Registers `POST /v1/chat/completions` and `GET /v1/models` on `app`. Each request becomes one
 * event with `path: '/v1/chat/completions'` and the body `{ ...metadata, messages, model:
 * '<endpointName>', invocationConfig: { sampling fields, stream? } }`, so a selector can pick the
 * endpoint by `body.model`.
 */
export function registerOpenAIRoutes(app: FastifyInstance, options: OpenAIFrontOptions, ctx: OpenAIRouteContext): void {
  const { models } = options;
  const created = Math.floor(Date.now() / 1000);
  const list = () => ({
    object: 'list',
    data: Object.keys(models).map((id) => ({ id, object: 'model', created, owned_by: 'rxserve' })),
  });
  app.get('/v1/models', async (_request, reply) => sendValue(reply, 200, list(), ctx.closing()));
  app.get('/v1/models/:model', async (request, reply) => {
    const { model } = request.params as { model: string };
    if (!Object.hasOwn(models, model)) {
      const e = new OpenAIError(`The model '${model}' does not exist`, 404, 'invalid_request_error', 'model_not_found', 'model');
      return sendError(reply, e, ctx.closing());
    }
    return sendValue(reply, 200, { id: model, object: 'model', created, owned_by: 'rxserve' }, ctx.closing());
  });

  app.post('/v1/chat/completions', async (request, reply) => {
    let chat: ChatRequest;
    try {
      chat = parseChatRequest(request.body, models);
    } catch (error) {
      const e = error instanceof OpenAIError ? error : new OpenAIError(toError(error).message, 400, 'invalid_request_error', null);
      return sendError(reply, e, ctx.closing());
    }
    const id = request.id;
    const body = {
      ...chat.metadata,
      messages: chat.messages,
      model: chat.endpoint,
      invocationConfig: chat.stream ? { ...chat.config, stream: true } : chat.config,
    };
    const init: InvokeInit = { id, path: '/v1/chat/completions' };
    const completionId = `chatcmpl-${id}`;
    if (chat.stream) return streamCompletion(reply, chat, init, body, completionId, Math.floor(Date.now() / 1000), ctx);

    const client = new ClientWatch(reply);
    client.watch(
      ctx.begin(body, init, (out, why) => {
        client.done();
        if (client.gone) return;
        if (out === undefined) return void sendError(reply, refused(why, ctx.closing()), ctx.closing());
        const answer = answerOf(out, chat.endpoint, ctx.place(chat.endpoint));
        if (answer instanceof OpenAIError) return void sendError(reply, answer, ctx.closing());
        sendValue(
          reply,
          200,
          {
            id: completionId,
            object: 'chat.completion',
            created: Math.floor(Date.now() / 1000),
            model: chat.model,
            choices: [
              { index: 0, message: { role: 'assistant', content: answer.answer, refusal: null }, logprobs: null, finish_reason: 'stop' },
            ],
            usage: openAIUsage(answer.usage),
          },
          ctx.closing(),
        );
        closeIfUnread(reply, ctx.streamLimits.sendTimeoutMs);
      }),
    );
    return reply;
  });
}

function sendValue(reply: FastifyReply, status: number, value: unknown, closing: boolean, retryAfter?: string): FastifyReply {
  return sendJson(reply, status, JSON.stringify(value), closing, retryAfter);
}

function sendError(reply: FastifyReply, error: OpenAIError, closing: boolean): FastifyReply {
  return sendValue(reply, error.status, error.body(), closing, error.retryAfter ?? (error.status === 503 ? '1' : undefined));
}

/**
 * `stream: true`: `chat.completion.chunk` events as OpenAI sends them — a role chunk, one chunk
 * per `{ delta }` partial of the endpoint, a finish chunk, a usage chunk when
 * `stream_options.include_usage`, then `data: [DONE]`. The 200 and the role chunk go out with the
 * first token (or the whole answer): a request that fails before it gets its status and an error
 * in OpenAI's shape, as without streaming (docs/design.md §10), so clients retry a 429 or a 502. An error
 * after the stream opened is one `data: { error }` event. A client that disconnects cancels the
 * call (and the upstream request).
 */
function streamCompletion(
  reply: FastifyReply,
  chat: ChatRequest,
  init: InvokeInit,
  body: unknown,
  id: string,
  created: number,
  ctx: OpenAIRouteContext,
): FastifyReply {
  const stream = new EventStream(reply, ctx.streamLimits);
  const chunk = (choices: unknown[], extra: object = {}): string =>
    sseFrame(undefined, JSON.stringify({ id, object: 'chat.completion.chunk', created, model: chat.model, choices, ...extra }));
  const delta = (content: Record<string, unknown>, finish: string | null = null) =>
    chunk([{ index: 0, delta: content, logprobs: null, finish_reason: finish }]);
  // A content chunk per partial: what `delta({ content: text })` gives, with only the text
  // stringified per token (the rest is fixed for the request).
  const contentHead = `data: {"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(chat.model)},"choices":[{"index":0,"delta":{"content":`;
  const contentChunk = (text: string): string => `${contentHead}${JSON.stringify(text)}},"logprobs":null,"finish_reason":null}]}\n\n`;
  let opened = false;
  const open = (): void => {
    if (opened) return;
    opened = true;
    stream.send(delta({ role: 'assistant', content: '' }), ctx.closing());
  };
  const fail = (error: OpenAIError): void => {
    if (opened) return stream.end(sseFrame(undefined, jsonOrUndefined(error.body()) ?? '{}'));
    if (stream.abandon()) sendError(reply, error, ctx.closing());
  };
  let streamed = false;
  const answered = (event: ServingEvent): void => {
    const answer = answerOf(event, chat.endpoint, ctx.place(chat.endpoint));
    if (answer instanceof OpenAIError) return fail(answer);
    if (!stream.open) return;
    open();
    let text = '';
    // A model that did not stream: its whole answer as one chunk.
    if (!streamed && answer.answer.length > 0) text += delta({ content: answer.answer });
    text += delta({}, 'stop');
    if (chat.includeUsage) text += chunk([], { usage: openAIUsage(answer.usage) });
    stream.end(`${text}${sseFrame(undefined, '[DONE]')}`);
  };
  const cancel = ctx.begin(
    body,
    init,
    (event, why) => (event !== undefined ? answered(event) : fail(refused(why, ctx.closing()))),
    (partial) => {
      if (!stream.open || partial.endpoint !== chat.endpoint) return;
      const text = (partial.data as { delta?: unknown } | null)?.delta;
      if (typeof text !== 'string') return;
      open();
      streamed = true;
      stream.write(contentChunk(text));
    },
  );
  stream.watch(cancel);
  return reply;
}

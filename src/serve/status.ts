// The HTTP status of an errored answer (docs/design.md §11) and the one shape of every error reply.
import type { FastifyReply } from 'fastify';
import { describeError } from '../errors.js';

/**
 * The status an errored answer is sent with. By `name`, so an error rebuilt from a worker maps
 * like the original: `RouteNotFoundError` 404, `QueueFullError` 503, `ModelTimeoutError` 504,
 * `CycleLimitError` 508 (Loop Detected, a flow's cycle bound, §17), `ConfigError` 500,
 * `ModelNotReadyError` 408 (a V2 `ready` before the models loaded, as MLRun),
 * an LLM provider's failure as docs/design.md §10 says (see `upstreamStatus`), anything else 400 (MLRun
 * answers 400). A `ModelRunnerError` is 400 whatever its models' errors were, except when every
 * model that failed, failed upstream: then it is its first provider failure's status, so a 429
 * stays a 429 and an OpenAI client retries what is retryable.
 */
export function statusOf(error: Error): number {
  switch (error.name) {
    case 'RouteNotFoundError':
      return 404;
    case 'QueueFullError':
      return 503;
    case 'ModelTimeoutError':
      return 504;
    case 'CycleLimitError':
      return 508;
    case 'ConfigError':
      return 500;
    case 'ModelNotReadyError':
      return 408;
    case 'ProviderError':
    case 'ModelRunnerError': {
      const upstream = upstreamFailure(error);
      return upstream === undefined ? 400 : upstreamStatus(upstream);
    }
    default:
      return 400;
  }
}

/** What serve() reads of a `ProviderError` (a rebuilt one too: by its fields, not its class). */
interface UpstreamFailure {
  readonly status?: number;
  readonly retryAfter?: string;
  readonly timedOut?: boolean;
}

/**
 * The provider failure an errored answer stands for: the error itself when it is a
 * `ProviderError`, or the cause of a `ModelRunnerError` whose every failed model failed with one
 * (its `modelsErrors` are `'<Name>: <message>'`).
 */
function upstreamFailure(error: Error): UpstreamFailure | undefined {
  if (error.name === 'ProviderError') return error as UpstreamFailure;
  if (error.name !== 'ModelRunnerError') return undefined;
  const cause = (error as { cause?: unknown }).cause;
  if (!(cause instanceof Error) || cause.name !== 'ProviderError') return undefined;
  const errors = (error as { modelsErrors?: Readonly<Record<string, string | null>> }).modelsErrors ?? {};
  for (const name in errors) {
    const e = errors[name];
    if (e !== null && !e.startsWith('ProviderError: ')) return undefined;
  }
  return cause as UpstreamFailure;
}

/**
 * An upstream failure's status (docs/design.md §10): no answer in time (the provider's 408 or 504, or
 * `params.providerTimeoutMs`) 504; the provider's 429 429; its 400, 413 or 422 (it refused the
 * request as the caller shaped it) 400; any other status, a failed connection or a malformed
 * answer 502.
 */
export function upstreamStatus(failure: UpstreamFailure): number {
  if (failure.timedOut === true) return 504;
  switch (failure.status) {
    case 429:
      return 429;
    case 400:
    case 413:
    case 422:
      return 400;
    default:
      return 502;
  }
}

/**
 * The `Retry-After` an error reply carries: `1` with a 503 (a full step, a closing server), the
 * provider's own header, unchanged, with a 429 it sent; else none.
 */
export function retryAfterOf(error: Error, status: number): string | undefined {
  if (status === 503) return '1';
  if (status === 429) return upstreamFailure(error)?.retryAfter;
  return undefined;
}

/**
 * The status of a request the invoker refused to start: it was closing (503), else the request's
 * id was already in flight (409). The same on every route.
 */
export function refusalStatus(closing: boolean): number {
  return closing ? 503 : 409;
}

/** The body of every error reply: `{ "error": "<Name>: <message>" }`. */
export function errorBody(error: unknown): { error: string } {
  return { error: describeError(error) };
}

/** An error reply made here (not by a step): its name, message and status. */
export class HttpError extends Error {
  constructor(
    override readonly name: string,
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

/**
 * The one way rxserve's routes answer (`POST /*`, `/v2`, `/v1`, and their errors): a JSON text
 * with its status and the request id echoed in `x-request-id`; `Retry-After` when given; while the
 * server closes, `Connection: close`, so a kept-alive client does not hold the closing server open.
 */
export function sendJson(reply: FastifyReply, status: number, json: string, closing: boolean, retryAfter?: string): FastifyReply {
  if (closing) reply.header('connection', 'close');
  if (retryAfter !== undefined) reply.header('retry-after', retryAfter);
  return reply.code(status).header('x-request-id', reply.request.id).type('application/json; charset=utf-8').send(json);
}

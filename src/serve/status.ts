// The HTTP status of an errored answer (DESIGN §11) and the one shape of every error reply.
import { describeError } from '../errors.js';

/**
 * The status an errored answer is sent with. By `name`, so an error rebuilt from a worker maps
 * like the original: `RouteNotFoundError` 404, `QueueFullError` 503, `ModelTimeoutError` 504,
 * `CycleLimitError` 508 (Loop Detected, a flow's cycle bound, §17), `ConfigError` 500, anything else 400 (MLRun answers 400; a `ModelRunnerError` stays 400 whatever
 * its models' errors were).
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
    default:
      return 400;
  }
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

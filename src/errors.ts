// The error hierarchy (docs/design.md §8): one base class, typed subclasses, stable `name`s, `cause` kept.

/** Base class of every error rxserve raises. `name` is always the class's own name. */
export class RxServeError extends Error {
  override name = 'RxServeError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * A configuration object failed validation. `path` names the field
 * (`modelRunner.models[1].executionMechanism`), `expected` what it should have been.
 */
export class ConfigError extends RxServeError {
  override name = 'ConfigError';
  /** Every failing field, as `{ path, expected, actual }`. */
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[] | string, options?: { cause?: unknown }) {
    const list = typeof issues === 'string' ? [] : issues;
    super(typeof issues === 'string' ? issues : list.map(formatIssue).join('; '), options);
    this.issues = list;
  }
  /** The first failing field's path, or `''` for a message-only error. */
  get path(): string {
    return this.issues[0]?.path ?? '';
  }
}

export interface ConfigIssue {
  readonly path: string;
  readonly expected: string;
  readonly actual?: string;
  /** Said instead of "expected ..." when set. */
  readonly message?: string;
}

function formatIssue(issue: ConfigIssue): string {
  if (issue.message !== undefined) return `${issue.path}: ${issue.message}`;
  return issue.actual === undefined
    ? `${issue.path}: expected ${issue.expected}`
    : `${issue.path}: expected ${issue.expected}, got ${issue.actual}`;
}

/** A model could not be loaded (constructor, module import or `load()` failed). */
export class ModelLoadError extends RxServeError {
  override name = 'ModelLoadError';
  constructor(
    readonly endpointName: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`model '${endpointName}' could not be loaded: ${message}`, options);
  }
}

/**
 * At least one model of a `modelRunner` step failed and the step has `raiseException: true`.
 * `modelsErrors` maps every selected endpoint to its error message, or `null` when it succeeded
 * (MLRun's `ModelRunnerError.models_errors`); `cause` is the first failed model's error itself
 * (so serve() can answer an LLM provider's 429 as a 429, docs/design.md §10).
 */
export class ModelRunnerError extends RxServeError {
  override name = 'ModelRunnerError';
  constructor(
    readonly step: string,
    readonly modelsErrors: Readonly<Record<string, string | null>>,
    options?: { cause?: unknown },
  ) {
    const failed = Object.entries(modelsErrors).filter(([, e]) => e !== null);
    super(`step '${step}': ${failed.map(([name, e]) => `${name} failed (${e})`).join(', ')}`, options);
  }
}

/** A selector threw, or returned a name that is not a model of the step, or a name twice. */
export class SelectorError extends RxServeError {
  override name = 'SelectorError';
}

/**
 * An event found no way on: a router's key matched no route and the router has no
 * `defaultRoute`; a flow's choice named a step that is not one of its next steps; or none of an
 * event's branches in a flow reached the responder (`routes` then lists the steps where they
 * ended). `router` is the router, choice or flow that says so.
 */
export class RouteNotFoundError extends RxServeError {
  override name = 'RouteNotFoundError';
  constructor(
    readonly key: string | undefined,
    readonly routes: readonly string[],
    readonly router: string,
    options?: { message?: string },
  ) {
    super(
      options?.message ??
        `router '${router}': no route for key ${key === undefined ? 'undefined' : `'${key}'`}; ` +
          `available routes: ${routes.length ? routes.map((r) => `'${r}'`).join(', ') : '(none)'}`,
    );
  }
}

/**
 * A flow step in a cycle would have run more than its `maxIterations` for one input event
 * (docs/design.md §17): the event leaves that step errored with this error after the step ran exactly
 * `maxIterations` times. HTTP 508 (Loop Detected). LangGraph.js calls it `GraphRecursionError`.
 */
export class CycleLimitError extends RxServeError {
  override name = 'CycleLimitError';
  constructor(
    readonly step: string,
    readonly maxIterations: number,
    readonly eventId: string,
  ) {
    super(
      `step '${step}' already ran maxIterations (${maxIterations}) times for event '${eventId}': the cycle stops here ` +
        "(end the loop sooner with a choice, or raise the step's maxIterations)",
    );
  }
}

/** A model call ran past its entry's `timeoutMs`; the call was aborted. */
export class ModelTimeoutError extends RxServeError {
  override name = 'ModelTimeoutError';
  constructor(
    readonly endpointName: string,
    readonly timeoutMs: number,
  ) {
    super(`model '${endpointName}' timed out after ${timeoutMs} ms`);
  }
}

/**
 * A V2 `ready` request reached a step whose models are still loading (HTTP 408, as MLRun answers
 * before its model is loaded). `endpointNames` are the step's models.
 */
export class ModelNotReadyError extends RxServeError {
  override name = 'ModelNotReadyError';
  constructor(
    readonly step: string,
    readonly endpointNames: readonly string[],
  ) {
    super(
      `step '${step}': model${endpointNames.length === 1 ? '' : 's'} ${endpointNames.map((n) => `'${n}'`).join(', ')} not ready (still loading)`,
    );
  }
}

/** The step already held `maxInFlight + maxQueue` events; this one was rejected. */
export class QueueFullError extends RxServeError {
  override name = 'QueueFullError';
  constructor(
    readonly step: string,
    readonly maxInFlight: number,
    readonly maxQueue: number,
  ) {
    super(
      `step '${step}' is full (maxInFlight ${maxInFlight}, maxQueue ${maxQueue}); event rejected: raise maxQueue or maxInFlight, or slow the source (backpressure)`,
    );
  }
}

/** The worker thread or process running a call died; the call failed, the worker is replaced. */
export class WorkerCrashedError extends RxServeError {
  override name = 'WorkerCrashedError';
}

/**
 * An LLM provider call failed. `retryable` says whether trying again may succeed; `status` is the
 * provider's HTTP status (undefined for a failed connection or a malformed answer), `retryAfter`
 * its `Retry-After` header as sent, `timedOut` that no answer came within the call's limit.
 */
export class ProviderError extends RxServeError {
  override name = 'ProviderError';
  /** How long the provider asked to wait before retrying (`retry-after`), when it said. */
  readonly retryAfterMs?: number;
  /** The provider's `Retry-After` header, unchanged (serve() passes it on with a 429). */
  readonly retryAfter?: string;
  /** The provider gave no answer in time (its 408 or 504, or `params.providerTimeoutMs`). */
  readonly timedOut?: boolean;
  /** Tokens spent before the failure (partial, `complete: false`), when known. */
  usage?: Readonly<Record<string, unknown>>;
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly retryable: boolean,
    options?: ProviderErrorOptions,
  ) {
    super(message, options);
    if (options?.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
    if (options?.retryAfter !== undefined) this.retryAfter = options.retryAfter;
    if (options?.timedOut === true) this.timedOut = true;
  }
}

export interface ProviderErrorOptions {
  readonly cause?: unknown;
  readonly retryAfterMs?: number;
  readonly retryAfter?: string;
  readonly timedOut?: boolean;
}

/**
 * A `remoteStep` or `batchHttpRequests` call failed after its retries: the server answered with a
 * status ≥ 400 (`status`), or could not be reached (`status` undefined, the network error as
 * `cause`), or its answer could not be read (not JSON with `returnJson`). `answer` holds the first
 * 200 bytes of the server's answer, `attempts` how many requests were sent.
 */
export class RemoteStepError extends RxServeError {
  override name = 'RemoteStepError';
  constructor(
    readonly step: string,
    readonly url: string,
    readonly status: number | undefined,
    readonly answer: string,
    readonly attempts: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`remote step '${step}': ${message}`, options);
  }
}

/** The error type an event carries once a step failed it. */
export type ServingError = Error;

/**
 * Every error class rxserve raises, by name: the one list. Errors crossing a worker boundary get
 * their class back from it (execution/wire/protocol.ts), so a class missing here would arrive as a
 * plain `Error`; a test checks that every class this module exports is listed.
 */
export const ERROR_CLASSES: Readonly<Record<string, new (...args: never[]) => Error>> = Object.freeze({
  RxServeError,
  ConfigError,
  ModelLoadError,
  ModelRunnerError,
  SelectorError,
  RouteNotFoundError,
  CycleLimitError,
  ModelTimeoutError,
  ModelNotReadyError,
  QueueFullError,
  WorkerCrashedError,
  ProviderError,
  RemoteStepError,
});

/** Turns anything thrown into an `Error`, keeping real errors as they are (identity kept). */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  const error = new Error(typeof thrown === 'string' ? thrown : safeString(thrown));
  (error as { cause?: unknown }).cause = thrown;
  return error;
}

/** `'<ErrorName>: <message>'`, the form MLRun writes into a failed model's output. */
export function describeError(error: unknown): string {
  const e = toError(error);
  return `${e.name}: ${e.message}`;
}

/** A string for anything, never throwing (JSON for objects, when it can). */
export function safeString(value: unknown): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- objects went to JSON: what is left (a function, a symbol, a primitive) has its own String()
    return typeof value === 'object' ? JSON.stringify(value) : String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

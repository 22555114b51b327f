// The V2 model-server protocol of modelRouter and votingEnsemble (docs/design.md §18, MLRun's ModelRouter
// and V2ModelServer): paths, operations on one route, the answers' envelopes, what serve() lists.
import { asyncScheduler } from 'rxjs';
import { ConfigError, describeError, ModelRunnerError, RouteNotFoundError } from '../../errors.js';
import { withError, type ServingEvent } from '../../event.js';
import { isOperationName } from '../../model/operation.js';
import { isoTime } from '../../monitoring/isoTime.js';
import type { RouteSet } from './routeSet.js';

/** Where a V2 request goes, read from its path (and body). */
export interface V2Target {
  /** The path is the prefix itself: list the models. */
  readonly list?: boolean;
  /** The path is outside the prefix. */
  readonly outside?: boolean;
  readonly model?: string;
  readonly version?: string;
  readonly op?: string;
}

const NONE: V2Target = Object.freeze({});
const LIST: V2Target = Object.freeze({ list: true });
const OUTSIDE: V2Target = Object.freeze({ outside: true });

/**
 * Reads `<prefix>/<model>[/versions/<v>]/<op>` from a path. The prefix may follow a mount point
 * (`/ml/v2/models/...`, a plugin registered under a prefix); an event without a path (a stream's)
 * has no target; segments are URL-decoded.
 */
export function parseV2Path(path: string | undefined, prefix: string): V2Target {
  if (path === undefined || path === '' || path === '/') return NONE;
  const at = prefixAt(path, prefix);
  if (at < 0) return OUTSIDE;
  const rest = path.slice(at + prefix.length).replace(/^\/+|\/+$/g, '');
  if (rest === '') return LIST;
  const segments = rest.split('/').map(decode);
  const model = segments[0];
  let version: string | undefined;
  let ops = segments.slice(1);
  if (segments.length > 2 && segments[1] === 'versions') {
    version = segments[2];
    ops = segments.slice(3);
  }
  const op = ops.length > 0 ? ops.join('/') : undefined;
  return { model, ...(version !== undefined ? { version } : {}), ...(op !== undefined ? { op } : {}) };
}

/** Where `prefix` starts in `path` as whole segments (first occurrence), or -1. */
function prefixAt(path: string, prefix: string): number {
  for (let at = path.indexOf(prefix); at >= 0; at = path.indexOf(prefix, at + 1)) {
    const before = at === 0 || path[at - 1] === '/' || prefix.startsWith('/');
    const end = at + prefix.length;
    const after = end === path.length || path[end] === '/' || path[end] === '?';
    if (before && after) return at;
  }
  return -1;
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** The prefix as a path: a leading `/`, no trailing one. */
export function normalPrefix(prefix: string): string {
  const trimmed = prefix.replace(/\/+$/, '');
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

/** The body's `model` / `operation` field, when the body is an object and the field a non-empty string (MLRun reads them for streams). */
export function bodyField(body: unknown, field: 'model' | 'operation'): string | undefined {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const value = (body as Record<string, unknown>)[field];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The route of `<model>[/versions/<v>]`: `'<model>:<v>'` first, then `'<model>'`; -1 when neither is a route. */
export function routeOf(routes: RouteSet, model: string, version: string | undefined): number {
  if (version !== undefined) {
    const versioned = routes.indexOf(`${model}:${version}`);
    if (versioned >= 0) return versioned;
  }
  return routes.indexOf(model);
}

/** `RouteNotFoundError` for a model no route serves (404). */
export function unknownModel(step: string, routes: readonly string[], model: string, version: string | undefined): RouteNotFoundError {
  return new RouteNotFoundError(version === undefined ? model : `${model}:${version}`, routes, step);
}

/** `RouteNotFoundError` for a path outside the step's prefix (404). */
export function outsidePrefix(step: string, routes: readonly string[], path: string, prefix: string): RouteNotFoundError {
  const error = new RouteNotFoundError(path, routes, step);
  error.message = `router '${step}': path '${path}' is not under its prefix '${prefix}'; available routes: ${routes.map((r) => `'${r}'`).join(', ')}`;
  return error;
}

/** Operations whose request must hold an `inputs` list (MLRun's v2 validation). */
const NEEDS_INPUTS = new Set(['infer', 'predict', 'explain']);

/**
 * Why a request cannot run `op` on `model`, before any model runs: an `inputs` that is not a list
 * (infer, predict, explain), or an operation that no method can have. `undefined` when it can go.
 */
export function requestProblem(step: string, model: string, op: string, body: unknown): TypeError | undefined {
  if (NEEDS_INPUTS.has(op)) {
    const inputs = body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as { inputs?: unknown }).inputs : undefined;
    if (!Array.isArray(inputs)) {
      return new TypeError(
        `router '${step}': a V2 '${op}' request to '${model}' needs 'inputs' as a list in its body; got ${body === null || typeof body !== 'object' || Array.isArray(body) ? `a body that is ${describeKind(body)}` : `inputs ${describeKind(inputs)}`}`,
      );
    }
    return undefined;
  }
  if (op === 'ready' || op === 'metadata' || isOperationName(op)) return undefined;
  return new TypeError(
    `router '${step}': '${op}' is not an operation of '${model}'; operations are infer, predict, explain, metadata, ready, or a custom operation's name (letters, digits, _) that calls the model's op_<name>`,
  );
}

function describeKind(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** The event a route gets for `op`: the V2 operation in `metadata.operation` (none for infer/predict). */
export function withOperation(event: ServingEvent, op: string): ServingEvent {
  const predict = op === 'infer' || op === 'predict';
  const { metadata } = event;
  if (predict && metadata.operation === undefined) return event;
  const next: Record<string, unknown> = { ...metadata };
  if (predict) delete next.operation;
  else next.operation = op;
  return Object.freeze({ ...event, metadata: Object.freeze(next) });
}

/** What a step emits for an answer: the step's input event with the answer's body (or error) and metadata, the operation removed. */
export function answerOf(input: ServingEvent, answer: ServingEvent, body: unknown, step: string): ServingEvent {
  let { metadata } = answer;
  if (metadata.operation !== undefined) {
    const { operation: _operation, ...rest } = metadata;
    metadata = Object.freeze(rest);
  }
  const out = Object.freeze({ ...input, body, metadata });
  return answer.error === undefined ? out : withError(out, answer.error, answer.origin ?? step);
}

/**
 * A route's answer as V2 `outputs`: what the model returned, unless that already is a V2 response
 * (OnnxModel's `{ model_name, outputs }`), whose `outputs` are taken.
 */
export function outputsOf(body: unknown): unknown {
  if (body !== null && typeof body === 'object' && !Array.isArray(body) && 'outputs' in body && 'model_name' in body) {
    return (body as { outputs: unknown }).outputs;
  }
  return body;
}

/**
 * Runs one V2 operation on one route and emits the step's answer (docs/design.md §18): `infer`/`predict`
 * → `{ id, model_name, model_version?, outputs, timestamp }`; `explain` → the same without
 * `timestamp` (as MLRun); `ready` → `{ name, ready: true }` (the route answers 408 while loading);
 * `metadata` → `{ name, version, inputs, outputs }`; a custom operation → what `op_<x>` returned.
 */
export function runOnRoute(
  step: string,
  routes: RouteSet,
  route: number,
  model: string,
  version: string | undefined,
  op: string,
  event: ServingEvent,
  emit: (out: ServingEvent) => void,
): void {
  routes.send(route, withOperation(event, op), (answer) => {
    if (answer.error !== undefined) return emit(answerOf(event, answer, event.body, step));
    const body = answer.body;
    switch (op) {
      case 'infer':
      case 'predict':
      case 'explain':
        return emit(
          answerOf(
            event,
            answer,
            {
              id: event.id,
              model_name: model,
              ...(version !== undefined ? { model_version: version } : {}),
              outputs: outputsOf(body),
              ...(op === 'explain' ? {} : { timestamp: isoTime(asyncScheduler.now()) }),
            },
            step,
          ),
        );
      case 'ready':
        return emit(answerOf(event, answer, { name: model, ready: true }, step));
      case 'metadata': {
        const meta = (body ?? {}) as { inputs?: unknown; outputs?: unknown };
        return emit(
          answerOf(
            event,
            answer,
            {
              name: model,
              version: version ?? '',
              inputs: Array.isArray(meta.inputs) ? meta.inputs : [],
              outputs: Array.isArray(meta.outputs) ? meta.outputs : [],
            },
            step,
          ),
        );
      }
      default:
        return emit(answerOf(event, answer, body, step));
    }
  });
}

/**
 * How a failed route is listed (an ensemble's `errors`, a parallelRun's `ModelRunnerError`): a
 * route's own `ModelRunnerError` by its models' messages, anything else as `'<Name>: <message>'`.
 */
export function routeErrorText(error: Error): string {
  if (error instanceof ModelRunnerError) {
    const failed = Object.values(error.modelsErrors).filter((e): e is string => e !== null);
    if (failed.length > 0) return failed.join('; ');
  }
  return describeError(error);
}

/** `'m:v1'` → `['m', 'v1']`; `'m'` → `['m', undefined]`. */
export function splitVersion(route: string): [string, string | undefined] {
  const colon = route.lastIndexOf(':');
  return colon > 0 ? [route.slice(0, colon), route.slice(colon + 1)] : [route, undefined];
}

/** At least one route, non-empty names, and a `defaultRoute` among them (ConfigError naming the field). */
export function checkRoutes(operator: string, names: readonly string[], defaultRoute: string | undefined): void {
  if (names.length === 0) throw new ConfigError([{ path: `${operator}.routes`, expected: 'at least one route', actual: '{}' }]);
  const empty = names.find((n) => n.trim() === '' || n.includes('/'));
  if (empty !== undefined) {
    throw new ConfigError([
      {
        path: `${operator}.routes`,
        expected: "route names that are non-empty and have no '/' (they are path segments)",
        actual: `'${empty}'`,
      },
    ]);
  }
  if (defaultRoute !== undefined && !names.includes(defaultRoute)) {
    throw new ConfigError([
      {
        path: `${operator}.defaultRoute`,
        expected: `one of the routes (${names.map((n) => `'${n}'`).join(', ')})`,
        actual: `'${defaultRoute}'`,
      },
    ]);
  }
}

// ---- what serve() reads ----------------------------------------------------------------------

/** The key under which a router-family operator tells serve() what it serves; a symbol, so no public member. */
export const V2_SERVER: unique symbol = Symbol.for('rxserve.v2Server');

/** What a router-family step serves, for serve()'s `/v2` routes. */
export interface V2ServerInfo {
  /** MLRun's class name: 'ModelRouter', 'VotingEnsemble' or 'ParallelRun' (`GET /v2`'s `name`). */
  readonly kind: 'ModelRouter' | 'VotingEnsemble' | 'ParallelRun';
  /** The step's name. */
  readonly name: string;
  /** Its URL prefix; none: it is not addressed by path (parallelRun). */
  readonly prefix?: string;
  /** What `GET /v2/models` lists. */
  readonly models: readonly string[];
}

/** The V2 server a pipeline is, when it is one of the router family (not a `pipe()` of steps). */
export function v2ServerOf(pipeline: unknown): V2ServerInfo | undefined {
  return typeof pipeline === 'function' ? (pipeline as { [V2_SERVER]?: V2ServerInfo })[V2_SERVER] : undefined;
}

/** Marks an operator as a V2 server (see `v2ServerOf`). */
export function asV2Server<F extends (...args: never[]) => unknown>(operator: F, info: V2ServerInfo): F {
  return Object.defineProperty(operator, V2_SERVER, { value: Object.freeze(info), enumerable: false });
}

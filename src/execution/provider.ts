// How a step reaches models that something else owns (a graph): the interface operators depend
// on, so that operators never import the graph (docs/design.md §2: imports point down the layers).
import type { ModelEntry } from '../model/entry.js';
import type { GraphMonitor, LaneStats } from '../monitoring/monitor.js';
import type { Executor, ExecutorSession } from './executor.js';
import type { PoolOptions } from './poolOptions.js';

/** The key of a provider's step binding; a symbol, so it stays out of the public members. */
export const BIND_STEP: unique symbol = Symbol.for('rxserve.bindStep');

/** What one subscription of a bound step tells its provider. */
export interface StepSubscriber {
  /** The shared session failed (a model cannot load): error the stream. */
  fail(error: Error): void;
  /** The provider is closing: fail the calls in flight. */
  abort(error: Error): void;
  /** Its lanes' occupancy and its intake, for metrics. */
  lanes(): readonly LaneStats[];
  stats(): { readonly inFlight: number; readonly queued: number };
}

/** A step's hold on a session owned by its provider, shared by all of the step's subscriptions. */
export interface StepBinding {
  /** The step's name as the provider knows it (made unique within the provider). */
  readonly step: string;
  /** The step's intake counters, summed over its subscriptions. */
  readonly intake: { rejected: number };
  acquire(subscriber: StepSubscriber): { session: ExecutorSession; release(this: void): void; monitor: GraphMonitor };
}

/** What a step needs to bind to a provider. */
export interface StepRequest {
  readonly step: string;
  readonly models: readonly ModelEntry[];
  readonly pool?: PoolOptions;
  readonly executor?: Executor;
}

/**
 * A graph made by `createGraph()`, as the options of steps and flows name it (`modelRunner`'s and
 * `flow()`'s `graph`): the public part of its shape only. What a step uses of a graph
 * (`SessionProvider`) is not in the published typings; the option is checked when the step or flow
 * is made, and anything but a graph is a `ConfigError`.
 */
export interface GraphRef {
  readonly name: string;
  readonly closed: boolean;
}

/** Something that owns the models of steps bound to it: a graph made by `createGraph()`. */
export interface SessionProvider {
  /** Registers a step's models (their endpoint names must be unique in the provider). */
  [BIND_STEP](request: StepRequest): StepBinding;
}

/** True for a session provider (a graph). */
export function isSessionProvider(value: unknown): value is SessionProvider {
  return typeof (value as SessionProvider | null)?.[BIND_STEP] === 'function';
}

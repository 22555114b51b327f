// What a built flow shares across its subscriptions: its plan, the accounting of every running
// subscription (so graph.close() and invoker.close() can wait for background branches), its
// figures for the dashboard, and how a graph (or anything else) learns about it.
import type { FlowShape, FlowStepStats } from '../monitoring/monitor.js';
import type { FlowPlan } from './plan.js';

/** How long `close()` waits for a flow's background branches by default. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 30_000;

/** The key under which a host (a graph) takes the flows built on it. */
export const ATTACH_FLOW: unique symbol = Symbol.for('rxserve.attachFlow');

/** The key under which a built flow's operator carries its runtime. */
export const FLOW_RUNTIME: unique symbol = Symbol.for('rxserve.flowRuntime');

/**
 * What a flow needs from the graph it is built on (a graph implements it; declared here so that
 * flows never import the graph, docs/design.md §2): to be listed by `describe()`, watched by the
 * dashboard, and waited for by `close()`.
 */
export interface FlowHost {
  readonly name: string;
  readonly closed: boolean;
  [ATTACH_FLOW](flow: FlowRuntime): void;
}

/** True for a graph or anything else a flow can attach to. */
export function isFlowHost(value: unknown): value is FlowHost {
  return typeof (value as FlowHost | null)?.[ATTACH_FLOW] === 'function';
}

/** One running subscription of a flow, as the runtime sees it. */
export interface FlowSubscription {
  /** Input events with copies still inside the flow. */
  readonly live: number;
  /** Copies inside each step now (by step index). */
  readonly inside: ArrayLike<number>;
}

/** A built flow: one per `build()`, shared by all of its subscriptions. */
export class FlowRuntime {
  readonly subscriptions = new Set<FlowSubscription>();
  /** Own errors per step (by step index), over every subscription so far. */
  readonly errors: Float64Array;
  #waiters: (() => void)[] = [];

  constructor(readonly plan: FlowPlan) {
    this.errors = new Float64Array(plan.steps.length);
  }

  get name(): string {
    return this.plan.name;
  }

  /** Input events with copies inside the flow, over every subscription. */
  get live(): number {
    let live = 0;
    for (const s of this.subscriptions) live += s.live;
    return live;
  }

  /** Called by a subscription whose last input left, or that ended. */
  settled(): void {
    if (this.#waiters.length === 0 || this.live > 0) return;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }

  /**
   * Resolves once no input has copies inside the flow (background branches done), or after
   * `timeoutMs`; true when it settled, false when the time ran out.
   */
  whenIdle(timeoutMs: number = DEFAULT_CLOSE_TIMEOUT_MS): Promise<boolean> {
    if (this.live === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = timeoutMs === Infinity ? undefined : setTimeout(() => resolve(false), timeoutMs);
      this.#waiters.push(() => {
        if (timer !== undefined) clearTimeout(timer);
        resolve(true);
      });
    });
  }

  describe(): FlowShape {
    return this.plan.shape;
  }

  stats(): FlowStepStats[] {
    return this.plan.steps.map((step, i) => {
      let inFlight = 0;
      for (const s of this.subscriptions) inFlight += s.inside[i];
      return { flow: this.plan.name, step: step.name, inFlight, errors: this.errors[i] };
    });
  }
}

/** The runtime of a built flow's operator, or undefined for any other operator. */
export function flowRuntimeOf(operator: unknown): FlowRuntime | undefined {
  return typeof operator === 'function' ? (operator as { [FLOW_RUNTIME]?: FlowRuntime })[FLOW_RUNTIME] : undefined;
}

/** Waits (up to `timeoutMs` in all) for every flow in `flows` to be idle; true when all settled. */
export async function whenAllIdle(flows: Iterable<FlowRuntime>, timeoutMs: number): Promise<boolean> {
  const results = await Promise.all([...new Set(flows)].map((f) => f.whenIdle(timeoutMs)));
  return results.every(Boolean);
}

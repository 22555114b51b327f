// A step bound to a graph: one session for all of the step's subscriptions, and its figures.
import { RxServeError } from '../errors.js';
import type { Executor, ExecutorSession } from '../execution/executor.js';
import { trackLoad } from '../execution/loaded.js';
import type { StepBinding, StepSubscriber } from '../execution/provider.js';
import type { ModelEntry } from '../model/entry.js';
import type { GraphMonitor, StepStats } from '../monitoring/monitor.js';

/** A step's hold on its graph-owned session: one session for all of the step's subscriptions. */
export class StepRecord implements StepBinding {
  session: ExecutorSession | undefined;
  readonly subscribers = new Set<StepSubscriber>();
  readonly intake = { rejected: 0 };
  constructor(
    readonly step: string,
    readonly models: readonly ModelEntry[],
    private readonly executor: Executor,
    private readonly graph: { readonly name: string; readonly closed: boolean; readonly monitor: GraphMonitor },
  ) {}

  open(): ExecutorSession {
    if (this.graph.closed) throw new RxServeError(`graph '${this.graph.name}' is closed`);
    this.session ??= trackLoad(
      this.executor.open(this.models, {
        step: this.step,
        fail: (error) => {
          for (const s of this.subscribers) s.fail(error);
        },
      }),
    );
    return this.session;
  }

  acquire(subscriber: StepSubscriber) {
    const session = this.open();
    this.subscribers.add(subscriber);
    return { session, release: () => void this.subscribers.delete(subscriber), monitor: this.graph.monitor };
  }

  stats(): StepStats {
    let inFlight = 0;
    let queued = 0;
    for (const s of this.subscribers) {
      const counts = s.stats();
      inFlight += counts.inFlight;
      queued += counts.queued;
    }
    return { step: this.step, inFlight, queued, rejected: this.intake.rejected };
  }
}

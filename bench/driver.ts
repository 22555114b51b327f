// Shared benchmark plumbing: feed an operator with credit-based intake (at most `inFlight`
// events outstanding, the next one pushed when one comes out), so no side buffers without bound.
import { Subject, type OperatorFunction } from 'rxjs';
import { toEvent, type ServingEvent } from 'rxserve';

export interface RunFigures {
  readonly events: number;
  readonly seconds: number;
  readonly perEventUs: number;
  readonly perSecond: number;
  readonly rejected: number;
  /** Per-event latency (push to output), when the run was asked to record it. */
  readonly p50Ms?: number;
  readonly p99Ms?: number;
}

export const percentile = (sorted: readonly number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

export interface DriveOptions<T> {
  /** Counts an output as rejected (e.g. a QueueFullError). */
  readonly isRejected?: (out: T) => boolean;
  /** Records per-event latency when given: the id of the event an output belongs to. */
  readonly idOf?: (out: T) => string;
  /** Called after each output with the count so far (checkpoints of long runs). */
  readonly onReceived?: (received: number) => void;
}

/** Pushes `total` events through `op` keeping `inFlight` outstanding; resolves when all came out. */
export function drive<T>(
  op: OperatorFunction<ServingEvent, T>,
  total: number,
  inFlight: number,
  body: (i: number) => unknown,
  options: DriveOptions<T> = {},
): Promise<RunFigures> {
  const { isRejected = () => false, idOf, onReceived } = options;
  return new Promise((resolve, reject) => {
    const source = new Subject<ServingEvent>();
    let sent = 0;
    let received = 0;
    let rejected = 0;
    const startedAt = new Map<string, number>();
    const latencies: number[] = [];
    const events = Array.from({ length: Math.min(total, 4096) }, (_, i) => toEvent(body(i), { id: String(i) }));
    // A trampoline: with a synchronous operator, an output arrives inside source.next(); pushing
    // the next event from there would recurse once per event.
    let credits = 0;
    let pushing = false;
    const push = () => {
      credits++;
      if (pushing) return;
      pushing = true;
      while (credits > 0 && sent < total) {
        credits--;
        const event = events[sent % events.length];
        sent++;
        if (idOf) startedAt.set(event.id, performance.now());
        source.next(event);
      }
      pushing = false;
    };
    const t0 = performance.now();
    source.pipe(op).subscribe({
      next(out) {
        if (isRejected(out)) rejected++;
        if (idOf) latencies.push(performance.now() - startedAt.get(idOf(out))!);
        onReceived?.(received + 1);
        if (++received === total) {
          const seconds = (performance.now() - t0) / 1000;
          source.complete();
          latencies.sort((a, b) => a - b);
          resolve({
            events: total,
            seconds,
            perEventUs: (seconds * 1e6) / total,
            perSecond: total / seconds,
            rejected,
            ...(idOf ? { p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) } : {}),
          });
        } else push();
      },
      error: reject,
    });
    for (let i = 0; i < inFlight; i++) push();
  });
}

/** The median of `runs` repetitions (after one warm-up), by per-event time. */
export async function median(runs: number, once: () => Promise<RunFigures>): Promise<RunFigures> {
  await once();
  const results: RunFigures[] = [];
  for (let i = 0; i < runs; i++) results.push(await once());
  results.sort((a, b) => a.perEventUs - b.perEventUs);
  return results[Math.floor(results.length / 2)];
}

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
}

/** Pushes `total` events through `op` keeping `inFlight` outstanding; resolves when all came out. */
export function drive<T>(
  op: OperatorFunction<ServingEvent, T>,
  total: number,
  inFlight: number,
  body: (i: number) => unknown,
  isRejected: (out: T) => boolean = () => false,
): Promise<RunFigures> {
  return new Promise((resolve, reject) => {
    const source = new Subject<ServingEvent>();
    let sent = 0;
    let received = 0;
    let rejected = 0;
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
        source.next(event);
      }
      pushing = false;
    };
    const t0 = performance.now();
    source.pipe(op).subscribe({
      next(out) {
        if (isRejected(out)) rejected++;
        if (++received === total) {
          const seconds = (performance.now() - t0) / 1000;
          source.complete();
          resolve({ events: total, seconds, perEventUs: (seconds * 1e6) / total, perSecond: total / seconds, rejected });
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

// Type-level contracts users write against. `npm test` runs tsc over test/, so a signature that
// rejects these lines fails the suite; the runtime half checks the same code does what it says.
import { lastValueFrom, of, toArray } from 'rxjs';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { asEvents, router, step, type RouterConfig, type SelectorFn, type ServingEvent } from '../src/index.js';

interface Scored {
  risk: number;
}

describe('router key typing', () => {
  it('accepts a key function that declares its body type, as a selector function may', () => {
    const byRisk = (e: ServingEvent<Scored>) => (e.body.risk > 0.5 ? 'review' : 'approve');
    const bySelector: SelectorFn = (e: ServingEvent<Scored>) => (e.body.risk > 0.5 ? ['review'] : null);
    expectTypeOf(byRisk).toExtend<RouterConfig['key']>();
    expectTypeOf(bySelector).toExtend<SelectorFn>();
    // Still a function of an event: a key over some other argument is refused.
    expectTypeOf<(n: number) => string>().not.toExtend<RouterConfig['key']>();
    expectTypeOf<(e: ServingEvent) => number>().not.toExtend<RouterConfig['key']>();
  });

  it('routes with the typed key', async () => {
    const out = await lastValueFrom(
      of<Scored[]>({ risk: 0.9 }, { risk: 0.1 }).pipe(
        asEvents(),
        router({
          key: (e: ServingEvent<Scored>) => (e.body.risk > 0.5 ? 'review' : 'approve'),
          routes: { review: step(() => 'review'), approve: step(() => 'approve') },
        }),
        toArray(),
      ),
    );
    expect(out.map((e) => e.body).sort()).toEqual(['approve', 'review']);
  });
});

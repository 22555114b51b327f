// Property tests: every event that enters modelRunner leaves exactly once, in order when `ordered`.
import fc from 'fast-check';
import { concatMap, from, lastValueFrom, map, throwError, timer, toArray } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import {
  Model,
  ModelRunnerError,
  QueueFullError,
  SelectorError,
  modelRunner,
  toEvent,
  type ModelEntry,
  type PredictContext,
  type ServingEvent,
} from '../src/index.js';
import { testExecutor } from '../src/testing/index.js';

const NAMES = ['m1', 'm2', 'm3'] as const;

const callArb = fc.record({ delay: fc.integer({ min: 0, max: 6 }), fails: fc.boolean() });
const eventArb = fc.record({
  gap: fc.integer({ min: 0, max: 3 }),
  selection: fc.oneof(
    fc.constant(null),
    fc.subarray([...NAMES]),
    fc.constant(['m1', 'unknown']), // a bad selection: SelectorError on that event
  ),
  calls: fc.record({ m1: callArb, m2: callArb, m3: callArb }),
});
const configArb = fc.record({
  events: fc.array(eventArb, { minLength: 1, maxLength: 40 }),
  maxInFlight: fc.integer({ min: 1, max: 6 }),
  maxQueue: fc.integer({ min: 0, max: 6 }),
  ordered: fc.boolean(),
  laneLimit: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
  timeoutMs: fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }),
});

interface Plan {
  gap: number;
  selection: readonly string[] | null;
  calls: Record<(typeof NAMES)[number], { delay: number; fails: boolean }>;
}

/** Checks one run's outputs against its inputs. */
function checkOutputs(plans: Plan[], outputs: ServingEvent[], ordered: boolean) {
  const inputIds = plans.map((_, i) => `e${i}`);
  const outputIds = outputs.map((e) => e.id);
  // exactly once
  expect([...outputIds].sort()).toEqual([...inputIds].sort());
  // order kept among the events the step admitted (rejections leave at once, by design)
  const admitted = outputs.filter((e) => !(e.error instanceof QueueFullError)).map((e) => e.id);
  if (ordered) expect(admitted).toEqual(inputIds.filter((id) => admitted.includes(id)));
  for (const out of outputs) {
    if (out.error instanceof QueueFullError) continue;
    const plan = plans[Number(out.id.slice(1))];
    if (plan.selection?.includes('unknown')) {
      expect(out.error).toBeInstanceOf(SelectorError);
      continue;
    }
    const selected = plan.selection ?? [...NAMES];
    expect(Object.keys(out.body as object).sort()).toEqual([...selected].sort());
    const failed = selected.some((name) => {
      const output = (out.body as Record<string, unknown>)[name];
      return typeof output === 'object' && output !== null && 'error' in output;
    });
    expect(out.error instanceof ModelRunnerError).toBe(failed);
  }
}

describe('modelRunner delivery properties', () => {
  it('virtual time: random delays, failures, timeouts, selections and limits', () => {
    fc.assert(
      fc.property(configArb, ({ events, maxInFlight, maxQueue, ordered, laneLimit, timeoutMs }) => {
        const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
        const outputs: ServingEvent[] = [];
        let completed = false;
        scheduler.run(() => {
          const plans = new Map(events.map((plan, i) => [`e${i}`, plan]));
          const stand = (name: (typeof NAMES)[number]) => (_input: unknown, ctx: PredictContext) => {
            const { delay, fails } = plans.get(ctx.eventId)!.calls[name];
            return timer(delay).pipe(concatMap(() => (fails ? throwError(() => new Error(`${name} failed`)) : [name])));
          };
          const models: ModelEntry[] = NAMES.map((endpointName, i) => ({
            endpointName,
            modelClass: 'Model',
            executionMechanism: 'asyncio',
            ...(i === 0 && laneLimit ? { maxInFlight: laneLimit } : {}),
            ...(i === 1 && timeoutMs ? { timeoutMs } : {}),
          }));
          from(events.map((plan, i) => [plan, toEvent({}, { id: `e${i}` })] as const))
            .pipe(
              concatMap(([plan, event]) => timer(plan.gap).pipe(map(() => event))),
              modelRunner({
                models,
                selector: (e) => plans.get(e.id)!.selection,
                executor: testExecutor({ m1: stand('m1'), m2: stand('m2'), m3: stand('m3') }),
                maxInFlight,
                maxQueue,
                ordered,
              }),
            )
            .subscribe({ next: (e) => outputs.push(e), complete: () => (completed = true) });
        });
        expect(completed).toBe(true);
        checkOutputs(events, outputs, ordered);
      }),
      { numRuns: 300 },
    );
  });

  it('real time: the default executor with asyncio models, random delays and failures', async () => {
    class Jittery extends Model {
      override async predict(body: { delays: number[]; fails: boolean[] }, ctx: PredictContext) {
        const i = NAMES.indexOf(ctx.origin as (typeof NAMES)[number]);
        await new Promise((r) => setTimeout(r, body.delays[i]));
        if (body.fails[i]) throw new Error(`${ctx.origin} failed`);
        return ctx.origin;
      }
    }
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            selection: fc.oneof(fc.constant(null), fc.subarray([...NAMES])),
            delays: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 3, maxLength: 3 }),
            fails: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
          }),
          { minLength: 1, maxLength: 30 },
        ),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        async (events, maxInFlight, ordered) => {
          const outputs = await lastValueFrom(
            from(events.map((plan, i) => toEvent(plan, { id: `e${i}` }))).pipe(
              modelRunner({
                models: NAMES.map((endpointName) => ({ endpointName, modelClass: Jittery, executionMechanism: 'asyncio' as const })),
                selector: (e) => (e.body as Plan).selection,
                maxInFlight,
                maxQueue: Infinity,
                ordered,
              }),
              toArray(),
            ),
          );
          expect(outputs.map((e) => e.id).sort()).toEqual(events.map((_, i) => `e${i}`).sort());
          if (ordered) expect(outputs.map((e) => e.id)).toEqual(events.map((_, i) => `e${i}`));
          for (const out of outputs) {
            const plan = events[Number(out.id.slice(1))];
            const selected = plan.selection ?? [...NAMES];
            const failed = selected.some((name) => plan.fails[NAMES.indexOf(name)]);
            expect(out.error instanceof ModelRunnerError).toBe(failed);
            expect(Object.keys(out.body as object).sort()).toEqual([...selected].sort());
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('no unbounded buffer: far more synchronous events than maxInFlight + maxQueue', async () => {
    const total = 100_000;
    const maxInFlight = 8;
    const maxQueue = 32;
    const outputs = await lastValueFrom(
      from(Array.from({ length: total }, (_, i) => toEvent(i, { id: `e${i}` }))).pipe(
        modelRunner({
          models: [{ endpointName: 'm', modelClass: 'Model', executionMechanism: 'asyncio' }],
          maxInFlight,
          maxQueue,
        }),
        toArray(),
      ),
    );
    expect(outputs).toHaveLength(total);
    const rejected = outputs.filter((e) => e.error instanceof QueueFullError);
    expect(rejected).toHaveLength(total - maxInFlight - maxQueue);
    // the admitted ones are the first maxInFlight + maxQueue, answered in order
    expect(outputs.filter((e) => !e.error).map((e) => e.body)).toEqual(Array.from({ length: maxInFlight + maxQueue }, (_, i) => i));
    expect(rejected[0].error?.message).toBe(
      "step 'model_runner' is full (maxInFlight 8, maxQueue 32); event rejected: raise maxQueue or maxInFlight, or slow the source (backpressure)",
    );
  });
});

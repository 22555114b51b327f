// Chaos property test: random pipelines through the public modelRunner, on random mechanisms, with
// models that fail, are slow, hang past their timeout, block their thread, or kill their worker,
// random selectors and limits, and early unsubscribes. Whatever happens:
//   - every event that entered leaves exactly once (a result or an errored event), unless the
//     subscriber unsubscribed first (then at most once);
//   - with `ordered`, the events the step admitted leave in input order;
//   - every result belongs to its own event, and a model that was told to fail did fail;
//   - after teardown no child process and no worker thread is left;
//   - no promise rejection goes unhandled.
// Nothing here asserts timing: a call meant to succeed may still time out or share a crashed
// worker's fate on a slow machine, which the checks accept.
//
// CHAOS_RUNS=<n> and CHAOS_SEED=<seed> (printed by fast-check on failure) replay or widen the search.
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { canCountThreads, nodeChildren, osThreads } from './support/processes.js';
import { Subject, type Subscription } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ModelRunnerError,
  ModelSelector,
  QueueFullError,
  SelectorError,
  modelRunner,
  registerSelector,
  toEvent,
  unregisterSelector,
  type ExecutionMechanism,
  type ModelEntry,
  type ServingEvent,
} from '../src/index.js';

const fixture = new URL('./fixtures/chaosModels.mjs', import.meta.url).href;
const MECHANISMS = ['naive', 'asyncio', 'thread_pool', 'process_pool', 'dedicated_process'] as const;
const IN_PROCESS = new Set<ExecutionMechanism>(['naive', 'asyncio']);
const ENDPOINTS = ['a', 'b', 'c'] as const;
type Endpoint = (typeof ENDPOINTS)[number];

// ---- leak detectors ------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits (bounded) until both counts are back to their baselines, then returns what they are. */
async function settled(baseline: { children: number; threads: number }, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let now = { children: nodeChildren(), threads: canCountThreads ? osThreads() : 0 };
  while ((now.children > baseline.children || now.threads > baseline.threads) && Date.now() < deadline) {
    await sleep(50);
    now = { children: nodeChildren(), threads: canCountThreads ? osThreads() : 0 };
  }
  return now;
}

// ---- unhandled rejections ------------------------------------------------------------------------

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);

// ---- selectors: the same rule (body.select) in each form a step accepts --------------------------

interface ChaosBody {
  id: string;
  select: readonly string[] | null;
  plan: Partial<Record<Endpoint, Action>>;
}
const bySelect = (event: ServingEvent) => (event.body as ChaosBody).select;
class SelectField extends ModelSelector {
  override select(event: ServingEvent) {
    return bySelect(event);
  }
}

// ---- arbitraries -----------------------------------------------------------------------------------

type Action =
  { do: 'ok' } | { do: 'fail' } | { do: 'hang' } | { do: 'exit' } | { do: 'crash' } | { do: 'slow' | 'ignore' | 'spin'; ms: number };

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ do: 'ok' as const }) },
  { weight: 2, arbitrary: fc.record({ do: fc.constant('slow' as const), ms: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ do: fc.constant('ignore' as const), ms: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 2, arbitrary: fc.constant({ do: 'fail' as const }) },
  { weight: 1, arbitrary: fc.constant({ do: 'hang' as const }) },
  { weight: 1, arbitrary: fc.record({ do: fc.constant('spin' as const), ms: fc.integer({ min: 20, max: 150 }) }) },
  { weight: 1, arbitrary: fc.constant({ do: 'exit' as const }) },
  { weight: 1, arbitrary: fc.constant({ do: 'crash' as const }) },
);

const modelArb = fc.record({
  mechanism: fc.constantFrom(...MECHANISMS),
  timeoutMs: fc.integer({ min: 200, max: 800 }),
  laneLimit: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
});

const eventArb = fc.record({
  select: fc.oneof(
    { weight: 3, arbitrary: fc.constant(null) },
    { weight: 3, arbitrary: fc.subarray([...ENDPOINTS]) }, // may name a model the run does not have
    { weight: 1, arbitrary: fc.constant(['a', 'a']) }, // a duplicate: SelectorError
  ),
  plan: fc.record({ a: actionArb, b: actionArb, c: actionArb }),
  gap: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 5 }) }),
});

const runArb = fc.record({
  models: fc.array(modelArb, { minLength: 1, maxLength: 3 }),
  events: fc.array(eventArb, { minLength: 1, maxLength: 12 }),
  ordered: fc.boolean(),
  raiseException: fc.boolean(),
  maxInFlight: fc.integer({ min: 1, max: 8 }),
  maxQueue: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.constant(Infinity)),
  selector: fc.constantFrom('none', 'function', 'instance', 'class', 'registered'),
  cancelGraceMs: fc.integer({ min: 50, max: 300 }),
  unsubscribe: fc.oneof(
    { weight: 3, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.record({ afterOutputs: fc.integer({ min: 0, max: 11 }) }) },
    { weight: 1, arbitrary: fc.record({ afterMs: fc.integer({ min: 0, max: 150 }) }) },
  ),
});
type Run = typeof runArb extends fc.Arbitrary<infer R> ? R : never;

// ---- one run -------------------------------------------------------------------------------------

const ERROR_FORMS = [
  /^Error: planned failure of '[abc]' on event e\d+$/,
  /^Error: '(exit|crash|spin)' refused: not in a worker$/,
  /^ModelTimeoutError: model '[abc]' timed out after \d+ ms$/,
  /^WorkerCrashedError: /,
];

function configOf(run: Run) {
  const names = ENDPOINTS.slice(0, run.models.length);
  const models: ModelEntry[] = run.models.map((m, i) => ({
    endpointName: names[i],
    modelClass: { module: fixture, export: 'Chaos' },
    executionMechanism: m.mechanism,
    timeoutMs: m.timeoutMs,
    ...(m.laneLimit !== undefined ? { maxInFlight: m.laneLimit } : {}),
    params: { mayDie: !IN_PROCESS.has(m.mechanism) },
  }));
  const selector =
    run.selector === 'function'
      ? { selector: bySelect }
      : run.selector === 'instance'
        ? { selector: new SelectField() }
        : run.selector === 'class'
          ? { selector: SelectField as never }
          : run.selector === 'registered'
            ? { selector: 'ChaosSelectField' }
            : {};
  return {
    names,
    operator: modelRunner({
      name: 'chaos',
      models,
      ...selector,
      ordered: run.ordered,
      raiseException: run.raiseException,
      maxInFlight: run.maxInFlight,
      maxQueue: run.maxQueue,
      pool: { cancelGraceMs: run.cancelGraceMs, maxProcesses: 2 },
    }),
  };
}

interface Outcome {
  outputs: ServingEvent[];
  completed: boolean;
  unsubscribed: boolean;
  streamError: unknown;
}

async function execute(run: Run): Promise<{ inputs: ChaosBody[]; names: readonly string[]; outcome: Outcome }> {
  const { names, operator } = configOf(run);
  // Without a selector every event runs every model.
  const inputs: ChaosBody[] = run.events.map((e, i) => ({
    id: `e${i}`,
    select: run.selector === 'none' ? null : e.select,
    plan: e.plan,
  }));
  const source = new Subject<ServingEvent>();
  const outcome: Outcome = { outputs: [], completed: false, unsubscribed: false, streamError: undefined };
  let subscription: Subscription | undefined;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const stop = () => {
    if (outcome.unsubscribed || outcome.completed) return;
    outcome.unsubscribed = true;
    subscription?.unsubscribe();
    finish();
  };
  subscription = source.pipe(operator).subscribe({
    next: (event) => {
      outcome.outputs.push(event);
      if (run.unsubscribe && 'afterOutputs' in run.unsubscribe && outcome.outputs.length >= run.unsubscribe.afterOutputs) stop();
    },
    error: (error) => {
      outcome.streamError = error;
      finish();
    },
    complete: () => {
      outcome.completed = true;
      finish();
    },
  });
  if (run.unsubscribe && 'afterOutputs' in run.unsubscribe && run.unsubscribe.afterOutputs === 0) stop();
  const timer = run.unsubscribe && 'afterMs' in run.unsubscribe ? setTimeout(stop, run.unsubscribe.afterMs) : undefined;
  for (let i = 0; i < inputs.length; i++) {
    if (run.events[i].gap > 0) await sleep(run.events[i].gap);
    source.next(toEvent(inputs[i], { id: inputs[i].id }));
  }
  source.complete();
  // A liveness bound, far above what a run needs (every call has a timeout below 1 s).
  let guard: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    finished,
    new Promise<void>((_, reject) => {
      guard = setTimeout(
        () => reject(new Error(`the run did not end within 30 s (${outcome.outputs.length} of ${inputs.length} outputs)`)),
        30_000,
      );
    }),
  ]);
  clearTimeout(guard);
  clearTimeout(timer);
  subscription.unsubscribe();
  return { inputs, names, outcome };
}

function check(run: Run, inputs: ChaosBody[], names: readonly string[], outcome: Outcome): void {
  const { outputs } = outcome;
  expect(outcome.streamError).toBeUndefined();
  const inputIds = inputs.map((b) => b.id);
  const outputIds = outputs.map((e) => e.id);
  // at most once; exactly once unless unsubscribed early
  expect(new Set(outputIds).size).toBe(outputIds.length);
  for (const id of outputIds) expect(inputIds).toContain(id);
  if (!outcome.unsubscribed) {
    expect(outcome.completed).toBe(true);
    expect([...outputIds].sort()).toEqual([...inputIds].sort());
  }
  // ordered: what the step admitted leaves in input order (a QueueFullError leaves at once, by design)
  if (run.ordered) {
    const admitted = outputs.filter((e) => !(e.error instanceof QueueFullError)).map((e) => e.id);
    expect(admitted).toEqual(inputIds.filter((id) => admitted.includes(id)));
  }
  const single = names.length === 1;
  for (const out of outputs) {
    if (out.error instanceof QueueFullError) {
      expect(out.origin).toBe('chaos');
      continue;
    }
    const input = inputs[Number(out.id.slice(1))];
    const wanted = input.select ?? names;
    const valid = new Set(wanted).size === wanted.length && wanted.every((n) => names.includes(n));
    if (!valid) {
      expect(out.error).toBeInstanceOf(SelectorError);
      continue;
    }
    const outputOf = (name: string): unknown => (single ? out.body : (out.body as Record<string, unknown>)[name]);
    if (wanted.length === 0) expect(out.body).toEqual({});
    else if (!single) expect(Object.keys(out.body as object).sort()).toEqual([...wanted].sort());
    let failed = false;
    for (const name of wanted) {
      const output = outputOf(name) as { error?: string };
      const plan = input.plan[name as Endpoint]!;
      if (output !== null && typeof output === 'object' && typeof output.error === 'string') {
        failed = true;
        expect(
          ERROR_FORMS.some((form) => form.test(output.error!)),
          `unexpected error of '${name}': ${output.error}`,
        ).toBe(true);
      } else {
        // a result is this event's own, from this model; calls told to fail, hang or die never succeed
        expect(output).toEqual({ id: input.id, by: name });
        expect(['fail', 'hang', 'exit', 'crash']).not.toContain(plan.do);
      }
    }
    if (run.raiseException && failed) {
      expect(out.error).toBeInstanceOf(ModelRunnerError);
      expect(out.origin).toBe('chaos');
    } else expect(out.error).toBeUndefined();
  }
}

// ---- the tests -----------------------------------------------------------------------------------

describe('chaos: random pipelines on every mechanism', () => {
  let baseline = { children: 0, threads: 0 };

  beforeAll(async () => {
    registerSelector('ChaosSelectField', SelectField);
    process.on('unhandledRejection', onUnhandled);
    // Warm up: the first pools start libuv's and V8's own threads, which then stay.
    const warm = new Subject<ServingEvent>();
    const done = new Promise<void>((resolve) =>
      warm
        .pipe(
          modelRunner({
            models: MECHANISMS.map((mechanism, i) => ({
              endpointName: `w${i}`,
              modelClass: { module: fixture, export: 'Chaos' },
              executionMechanism: mechanism,
            })),
          }),
        )
        .subscribe({ complete: resolve }),
    );
    warm.next(toEvent({ id: 'warm' }));
    warm.complete();
    await done;
    await sleep(200);
    baseline = await settled({ children: 0, threads: 0 }, 5_000);
  });

  afterAll(() => {
    unregisterSelector('ChaosSelectField');
    process.off('unhandledRejection', onUnhandled);
  });

  it('the leak detectors see a worker thread and a child process that were not closed', async () => {
    const before = { children: nodeChildren(), threads: canCountThreads ? osThreads() : 0 };
    const worker = new Worker('setInterval(() => {}, 1_000)', { eval: true });
    worker.unref(); // as piscina keeps its threads: invisible to the event loop's handle list
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1_000)'], { stdio: 'ignore' });
    await new Promise((resolve) => worker.once('online', resolve));
    await sleep(100);
    const leaked = await settled(before, 300);
    if (canCountThreads) expect(leaked.threads).toBeGreaterThan(before.threads);
    expect(leaked.children).toBeGreaterThan(before.children);
    await worker.terminate();
    child.kill('SIGKILL');
    const after = await settled(before);
    expect(after.children).toBeLessThanOrEqual(before.children);
    expect(after.threads).toBeLessThanOrEqual(before.threads);
  });

  it('every event leaves exactly once, in order when ordered; nothing is left behind', async () => {
    const runs = Number(process.env.CHAOS_RUNS ?? 14);
    const seed = process.env.CHAOS_SEED === undefined ? undefined : Number(process.env.CHAOS_SEED);
    await fc.assert(
      fc.asyncProperty(runArb, async (run) => {
        const { inputs, names, outcome } = await execute(run);
        check(run, inputs, names, outcome);
        // Teardown has run (complete or unsubscribe); pools and processes close asynchronously.
        const after = await settled(baseline);
        expect(after.children, 'node child processes after teardown').toBeLessThanOrEqual(baseline.children);
        expect(after.threads, 'OS threads (worker threads) after teardown').toBeLessThanOrEqual(baseline.threads);
        expect(unhandled).toEqual([]);
      }),
      { numRuns: runs, endOnFailure: true, ...(seed !== undefined ? { seed } : {}) },
    );
  }, 180_000);
});

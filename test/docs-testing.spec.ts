// The example of docs/testing.md, run as a test so the page stays true.
import { map } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { beforeEach, expect, it } from 'vitest';
import { ModelSelector, modelRunner, router, toEvent, type ModelEntry, type ServingEvent } from '../src/index.js';
import { bodies, testExecutor } from '../src/testing/index.js';

class MyClassifier extends ModelSelector {
  constructor(private readonly models: string[]) {
    super();
  }
  override select(event: ServingEvent<{ models?: string[] }>) {
    const current = event.body.models;
    return current && current.every((m) => this.models.includes(m)) ? current : [];
  }
}

const models: ModelEntry[] = [
  { endpointName: 'finance', modelClass: 'LLModel', executionMechanism: 'asyncio' },
  { endpointName: 'travel', modelClass: 'LLModel', executionMechanism: 'asyncio' },
];

let scheduler: TestScheduler;
beforeEach(() => {
  scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
});

it('selects, runs and merges per event (virtual time)', () => {
  scheduler.run(({ cold, hot, expectObservable }) => {
    const executor = testExecutor({
      finance: () => cold('--a|', { a: { answer: 'buy bonds' } }), // takes 2 frames
      travel: () => cold('-b|', { b: { answer: 'visit Porto' } }), // takes 1 frame
    });
    const events = hot('-x-y-z---|', {
      x: toEvent({ models: ['finance'] }),
      y: toEvent({ models: ['finance', 'travel'] }),
      z: toEvent({ models: ['weather'] }), // not allowed: nothing selected
    });
    const out = events.pipe(modelRunner({ models, selector: new MyClassifier(['finance', 'travel']), executor }), bodies());
    expectObservable(out).toBe('---a-(bc)|', {
      a: { finance: { answer: 'buy bonds' } },
      b: { finance: { answer: 'buy bonds' }, travel: { answer: 'visit Porto' } },
      c: {},
    });
  });
});

it('routes by key, and a slow model times out in virtual time', () => {
  scheduler.run(({ cold, hot, expectObservable }) => {
    const executor = testExecutor({ fast: () => cold('-f|', { f: 'F' }), slow: () => cold('-----s|', { s: 'S' }) });
    const step = (name: string, timeoutMs?: number) =>
      modelRunner({
        name,
        models: [{ endpointName: name, modelClass: 'Model', executionMechanism: 'asyncio', ...(timeoutMs ? { timeoutMs } : {}) }],
        executor,
        raiseException: false,
      });
    const events = hot('ab|', { a: toEvent({}, { path: 'fast' }), b: toEvent({}, { path: 'slow' }) });
    const out = events.pipe(
      router({ key: (e) => e.path, routes: { fast: step('fast'), slow: step('slow', 3) } }),
      bodies(),
      map((b) => JSON.stringify(b)),
    );
    expectObservable(out).toBe('-f--(s|)', { f: '"F"', s: `{"error":"ModelTimeoutError: model 'slow' timed out after 3 ms"}` });
  });
});

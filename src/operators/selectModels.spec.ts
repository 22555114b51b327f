import { TestScheduler } from 'rxjs/testing';
import { map } from 'rxjs';
import { beforeEach, describe, expect, it } from 'vitest';
import { ModelSelector, registerSelector, selectModels, toEvent, type ModelEntry, type ServingEvent } from '../index.js';

// The seed's selector, ported from MLRun nearly line for line:
//   class MyClassifier(ModelSelector):
//       def __init__(self, models): self.models = deepcopy(models)
//       def select(self, event, available_models):
//           current_models = event.body.get("models")
//           if current_models and set(current_models).issubset(set(self.models)):
//               return current_models
//           return []
class MyClassifier extends ModelSelector {
  private readonly models: string[];
  constructor({ models }: { models: string[] }) {
    super();
    this.models = structuredClone(models);
  }
  override select(event: ServingEvent<{ models?: string[] }>, _availableModels: readonly ModelEntry[]) {
    const currentModels = event.body.models;
    if (currentModels && currentModels.every((m) => this.models.includes(m))) {
      return currentModels;
    }
    return [];
  }
}

const models: ModelEntry[] = ['m1', 'm2', 'm3'].map((endpointName) => ({
  endpointName,
  modelClass: 'Model',
  executionMechanism: 'naive',
}));

describe('selectModels', () => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it("narrows each event's model list with the seed's MyClassifier", () => {
    registerSelector('MyClassifier', MyClassifier, { override: true });
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot('-a-b-c-d-|', {
        a: toEvent({ models: ['m1', 'm2'] }, { id: 'a' }),
        b: toEvent({ models: ['m2'] }, { id: 'b' }),
        c: toEvent({ models: ['m1', 'm3'] }, { id: 'c' }), // m3 not in the classifier's set
        d: toEvent({}, { id: 'd' }),
      });
      const out = source.pipe(
        selectModels('MyClassifier', models, { selectorParams: { models: ['m1', 'm2'] } }),
        map(({ event, selected }) => [event.id, selected]),
      );
      expectObservable(out).toBe('-a-b-c-d-|', {
        a: ['a', ['m1', 'm2']],
        b: ['b', ['m2']],
        c: ['c', []],
        d: ['d', []],
      });
      expectSubscriptions(source.subscriptions).toBe('^--------!');
    });
  });

  it('selects all models in registration order for null/undefined and without a selector', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const source = hot('ab|', { a: toEvent(1, { id: 'a' }), b: toEvent(2, { id: 'b' }) });
      expectObservable(
        source.pipe(
          selectModels(() => null, models),
          map((s) => s.selected),
        ),
      ).toBe('ab|', {
        a: ['m1', 'm2', 'm3'],
        b: ['m1', 'm2', 'm3'],
      });
      expectObservable(
        source.pipe(
          selectModels(undefined, models),
          map((s) => s.selected),
        ),
      ).toBe('ab|', {
        a: ['m1', 'm2', 'm3'],
        b: ['m1', 'm2', 'm3'],
      });
    });
  });

  it('keeps the order the selector returned, and accepts model entries as well as names', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const source = hot('a|', { a: toEvent(1) });
      expectObservable(
        source.pipe(
          selectModels((_e, available) => [available[2], 'm1'], models),
          map((s) => s.selected),
        ),
      ).toBe('a|', { a: ['m3', 'm1'] });
    });
  });

  it('fails only the event with a bad answer: SelectorError on the event, nothing selected', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const answers: Record<string, unknown> = { a: ['m9'], b: 'm1', c: ['m2'], d: [3] };
      const source = hot('abcd|', Object.fromEntries(Object.keys(answers).map((k) => [k, toEvent(k, { id: k })])));
      const out = source.pipe(
        selectModels((e) => answers[e.id] as string[], models, { name: 'runner' }),
        map(({ event, selected }) => [event.id, event.error?.name ?? null, event.origin ?? null, selected]),
      );
      expectObservable(out).toBe('abcd|', {
        a: ['a', 'SelectorError', 'runner', []],
        b: ['b', 'SelectorError', 'runner', []],
        c: ['c', null, null, ['m2']],
        d: ['d', 'SelectorError', 'runner', []],
      });
    });
  });

  it('passes an errored event as { event, selected: [] } without calling the selector', () => {
    let calls = 0;
    const errored = toEvent(1, { error: new Error('before') });
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('a|', { a: errored }).pipe(
        selectModels(() => {
          calls++;
          return null;
        }, models),
      );
      expectObservable(out).toBe('a|', { a: { event: errored, selected: [] } });
    });
    expect(calls).toBe(0);
  });

  it('a throwing selector fails that event only; source errors and empty/never sources pass', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const out = hot('ab#', { a: toEvent('bad', { id: 'a' }), b: toEvent('ok', { id: 'b' }) }, new Error('src')).pipe(
        selectModels((e) => {
          if (e.body === 'bad') throw new Error('cannot read');
          return ['m1'];
        }, models),
        map(({ event, selected }) => [event.error?.message ?? null, selected]),
      );
      expectObservable(out).toBe(
        'ab#',
        {
          a: ["step 'model_runner': the selector threw Error: cannot read", []],
          b: [null, ['m1']],
        },
        new Error('src'),
      );
      expectObservable(cold<ServingEvent>('|').pipe(selectModels(() => null, models))).toBe('|');
      expectObservable(cold<ServingEvent>('-').pipe(selectModels(() => null, models))).toBe('-');
    });
  });

  it('unsubscribes from the source early', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot('-a-b-c', { a: toEvent(1), b: toEvent(2), c: toEvent(3) });
      expectObservable(
        source.pipe(
          selectModels(() => null, models),
          map(() => 'x'),
        ),
        '^--!',
      ).toBe('-x--');
      expectSubscriptions(source.subscriptions).toBe('^--!');
    });
  });
});

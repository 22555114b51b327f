// modelRunner: several models per event, MLRun's merge rule, paths, errors, timeouts, metadata.
import { from, lastValueFrom, toArray, type OperatorFunction } from 'rxjs';
import { Model, asEvents, modelRunner, onError, type PredictContext, type ServingEvent } from 'rxserve';

class Scale extends Model<{ value: number }, { value: number }> {
  override predict(body: { value: number }) {
    return { value: body.value * (this.params.factor as number) };
  }
}
class Sentiment extends Model<string, { label: string }> {
  override async predict(text: string) {
    await new Promise((r) => setTimeout(r, 5)); // an I/O-bound model, e.g. a remote call
    return { label: /good|great/.test(text) ? 'positive' : 'neutral' };
  }
}
class Flaky extends Model<{ value: number }, number> {
  override predict(body: { value: number }) {
    if (body.value < 0) throw new RangeError(`cannot score ${body.value}`);
    return body.value;
  }
}
class Slow extends Model {
  override predict(_body: unknown, ctx: PredictContext) {
    // Respects cancellation: the step aborts ctx.signal when timeoutMs expires.
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve('finally'), 1_000);
      ctx.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(ctx.signal.reason);
      });
    });
  }
}

/** Runs plain bodies through the given steps and collects the events that come out. */
const run = (bodies: unknown[], ...steps: OperatorFunction<ServingEvent, ServingEvent>[]): Promise<ServingEvent[]> =>
  lastValueFrom(steps.reduce((events, step) => events.pipe(step), from(bodies).pipe(asEvents())).pipe(toArray()));
let failures = 0;
const check = (label: string, ok: boolean) => {
  console.log(`${ok ? '✓' : '✗'} ${label}`);
  if (!ok) failures++;
};

// One registered model: the body becomes its output.
const [single] = await run(
  [{ value: 2 }],
  modelRunner({ models: [{ endpointName: 'double', modelClass: Scale, executionMechanism: 'naive', params: { factor: 2 } }] }),
);
console.log('one model  →', JSON.stringify(single.body));
check('one model: the body is its output', JSON.stringify(single.body) === '{"value":4}');

// Several models: keyed by endpoint name; inputPath / resultPath; each model gets its own copy.
const [several] = await run(
  [{ value: 3, review: { text: 'a great product' } }],
  modelRunner({
    name: 'scoring',
    models: [
      { endpointName: 'double', modelClass: Scale, executionMechanism: 'naive', params: { factor: 2 } },
      {
        endpointName: 'sentiment',
        modelClass: Sentiment,
        executionMechanism: 'asyncio',
        inputPath: 'review.text',
        resultPath: 'review.sentiment',
      },
    ],
  }),
);
console.log('two models →', JSON.stringify(several.body));
console.log('metadata   →', JSON.stringify(several.metadata));
check(
  'two models: keyed by endpoint name, resultPath writes into a copy of the body',
  (several.body as any).sentiment.review.sentiment.label === 'positive' && (several.body as any).double.value === 6,
);

// A failing model: with raiseException false the error stays in the body...
const [kept] = await run(
  [{ value: -1 }],
  modelRunner({
    models: [
      { endpointName: 'flaky', modelClass: Flaky, executionMechanism: 'naive' },
      { endpointName: 'double', modelClass: Scale, executionMechanism: 'naive', params: { factor: 2 } },
    ],
    raiseException: false,
  }),
);
console.log('raiseException: false →', JSON.stringify(kept.body));
check('a failed model reads { error: "<Name>: <message>" }', (kept.body as any).flaky.error === 'RangeError: cannot score -1');

// ...by default the event leaves errored (ModelRunnerError), and onError can recover it.
const [recovered] = await run(
  [{ value: -1 }],
  modelRunner({
    models: [
      { endpointName: 'flaky', modelClass: Flaky, executionMechanism: 'naive' },
      { endpointName: 'double', modelClass: Scale, executionMechanism: 'naive', params: { factor: 2 } },
    ],
  }),
  onError((event) => ({ fallback: true, reason: event.error.message })),
);
console.log('raiseException: true + onError →', JSON.stringify(recovered.body));
check('onError recovered the errored event', (recovered.body as any).fallback === true);

// A per-model timeout aborts the work and fails only that model.
const started = performance.now();
const [timed] = await run(
  [{}],
  modelRunner({
    models: [
      { endpointName: 'slow', modelClass: Slow, executionMechanism: 'asyncio', timeoutMs: 50 },
      { endpointName: 'identity', modelClass: 'Model', executionMechanism: 'naive' },
    ],
    raiseException: false,
  }),
);
console.log(`timeoutMs 50 → ${JSON.stringify(timed.body)} after ${(performance.now() - started).toFixed(0)} ms`);
check(
  'the slow model timed out, the other answered',
  (timed.body as any).slow.error.startsWith('ModelTimeoutError') && (timed.body as any).identity !== undefined,
);

if (failures > 0) process.exit(1);

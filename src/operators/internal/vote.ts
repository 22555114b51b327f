// The votes of votingEnsemble (MLRun's VotingEnsemble): reading each route's predictions, the
// vote type, the weights, and the per-row vote itself.
import { ConfigError } from '../../errors.js';

export type VoteType = 'classification' | 'regression';

/** One route's predictions: a number per row, and whether they came keyed by `predictionColName`. */
export interface Predictions {
  readonly values: readonly number[];
  readonly keyed: boolean;
}

/**
 * A route's predictions from its answer body: a list of numbers; or the `outputs` of a V2 answer
 * (a list, `outputs[predictionColName]`, or — OnnxModel's tensors — the `data` of the tensor named
 * `predictionColName`, else of the first one); or `body[predictionColName]`. A string says why
 * the answer holds none (the route is then counted as failed).
 */
export function predictionsOf(body: unknown, predictionColName: string): Predictions | string {
  let values: unknown = body;
  let keyed = false;
  if (isRecord(body)) {
    const outputs = 'outputs' in body ? body.outputs : body;
    if (Array.isArray(outputs) && outputs.length > 0 && outputs.every((o) => isRecord(o) && 'data' in o)) {
      const tensors = outputs as { name?: unknown; data: unknown }[];
      values = (tensors.find((o) => o.name === predictionColName) ?? tensors[0]).data;
    } else if (isRecord(outputs)) {
      if (!(predictionColName in outputs)) {
        return `its answer has no '${predictionColName}' (predictionColName) among ${
          Object.keys(outputs)
            .map((k) => `'${k}'`)
            .join(', ') || 'no fields'
        }`;
      }
      values = outputs[predictionColName];
      keyed = true;
    } else values = outputs;
  }
  if (!Array.isArray(values)) return `its answer holds no list of predictions (got ${kind(values)})`;
  for (let i = 0; i < values.length; i++) {
    const v: unknown = values[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) return `its prediction for row ${i} is ${kind(v)}, not a finite number`;
  }
  return { values: values as number[], keyed };
}

/** The vote type of the first answers (MLRun): every prediction an integer → classification. */
export function inferVoteType(predictions: readonly (readonly number[])[]): VoteType {
  return predictions.every((p) => p.every((v) => Number.isInteger(v))) ? 'classification' : 'regression';
}

/**
 * The weights by route, normalised to sum 1: missing ones are 0, none given → equal. MLRun leaves
 * weights that already sum to 1 or more as they are (so `{ a: 2, b: 2 }` averages to twice the
 * mean); rxserve always divides by the sum, so a regression vote stays a weighted mean.
 */
export function normaliseWeights(routes: readonly string[], weights: Readonly<Record<string, number>> | undefined, at: string): number[] {
  if (weights === undefined) return routes.map(() => 1 / routes.length);
  for (const [route, w] of Object.entries(weights)) {
    if (!routes.includes(route)) {
      throw new ConfigError([
        {
          path: `${at}.weights.${route}`,
          expected: `the weight of a route (${routes.map((r) => `'${r}'`).join(', ')})`,
          actual: `no route '${route}'`,
        },
      ]);
    }
    if (!Number.isFinite(w) || w < 0)
      throw new ConfigError([{ path: `${at}.weights.${route}`, expected: 'a finite number ≥ 0', actual: String(w) }]);
  }
  const raw = routes.map((r) => weights[r] ?? 0);
  const sum = raw.reduce((a, b) => a + b, 0);
  if (!(sum > 0))
    throw new ConfigError([{ path: `${at}.weights`, expected: 'at least one weight above 0', actual: JSON.stringify(weights) }]);
  return raw.map((w) => w / sum);
}

/**
 * The vote per row over the routes that answered. `weights` are theirs (any scale: they are
 * divided by their sum here, so routes that failed leave no gap). Classification: the class with
 * the largest sum of weights, the smallest class on a tie; regression: the weighted mean.
 */
export function vote(type: VoteType, predictions: readonly (readonly number[])[], weights: readonly number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  const rows = predictions[0].length;
  const out = new Array<number>(rows);
  if (type === 'regression') {
    for (let row = 0; row < rows; row++) {
      let sum = 0;
      for (let r = 0; r < predictions.length; r++) sum += predictions[r][row] * weights[r];
      out[row] = sum / total;
    }
    return out;
  }
  const scores = new Map<number, number>();
  for (let row = 0; row < rows; row++) {
    scores.clear();
    for (let r = 0; r < predictions.length; r++) {
      const label = predictions[r][row];
      scores.set(label, (scores.get(label) ?? 0) + weights[r]);
    }
    let best = Number.NaN;
    let bestScore = -1;
    for (const [label, score] of scores) {
      // Sums of fractions tie only up to rounding (0.1 + 0.2 against 0.3).
      const tie = Math.abs(score - bestScore) <= TIE_EPSILON;
      if ((score > bestScore && !tie) || (tie && label < best)) {
        best = label;
        bestScore = score;
      }
    }
    out[row] = best;
  }
  return out;
}

const TIE_EPSILON = 1e-9;

const isRecord = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

function kind(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number') return String(value);
  return typeof value === 'string' ? `the string ${JSON.stringify(value.slice(0, 40))}` : `a ${typeof value}`;
}

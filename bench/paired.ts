// Ratios that survive a shared machine: the two sides of a comparison run alternately, round after
// round (which side goes first alternates too, so neither always pays the other's GC debt), and the
// ratio reported is the median of the rounds' own ratios — a burst of load from elsewhere hits one
// round's two sides alike — with the quartiles of those ratios beside it, so a reader sees how
// far one run can be trusted.

export interface Paired<T> {
  /** The rounds' figures of each side, in order. */
  readonly ours: readonly T[];
  readonly base: readonly T[];
  /** The median of metric(ours) / metric(base) over the rounds. */
  readonly ratio: number;
  /** The lower and upper quartiles of the rounds' ratios. */
  readonly low: number;
  readonly high: number;
}

export interface PairedOptions<T> {
  readonly rounds: number;
  /** The figure compared (lower is better: µs per event, CPU per request, p50). */
  readonly metric: (figures: T) => number;
  /** Unmeasured runs of each side first (JIT warm-up); 1 unless told. */
  readonly warmups?: number;
}

/** Runs `ours` and `base` alternately for `rounds` rounds (after the warm-ups). */
export async function paired<T>(ours: () => Promise<T>, base: () => Promise<T>, options: PairedOptions<T>): Promise<Paired<T>> {
  const [b, o] = await interleaved([base, ours], options);
  return { ours: o!, base: b!, ...ratioOf(o!, b!, options.metric) };
}

/**
 * The same for any number of sides: each round runs every side once, the order rotating from
 * round to round (so no side always follows the same one); returns each side's figures by round.
 * Pair any two of them with `ratioOf`.
 */
export async function interleaved<T>(
  sides: readonly (() => Promise<T>)[],
  options: Pick<PairedOptions<T>, 'rounds' | 'warmups'>,
): Promise<T[][]> {
  const { rounds, warmups = 1 } = options;
  if (!(rounds >= 1)) throw new RangeError(`paired: rounds must be at least 1, got ${rounds}`);
  for (let i = 0; i < warmups; i++) for (const side of sides) await side();
  const figures = sides.map((): T[] => []);
  for (let i = 0; i < rounds; i++) {
    for (let k = 0; k < sides.length; k++) {
      const at = (i + k) % sides.length;
      figures[at]!.push(await sides[at]!());
    }
  }
  return figures;
}

/** The median (and quartiles) of metric(ours[i]) / metric(base[i]) over paired rounds. */
export function ratioOf<T>(
  ours: readonly T[],
  base: readonly T[],
  metric: (figures: T) => number,
): Pick<Paired<T>, 'ratio' | 'low' | 'high'> {
  return ratioSummary(ours.map((x, i) => metric(x) / metric(base[i]!)));
}

/**
 * The median and quartiles of per-round ratios, for a comparison whose rounds `paired` does not
 * run itself (e.g. a ratio of two overheads over a third row, all measured in the same round).
 */
export function ratioSummary(ratios: readonly number[]): Pick<Paired<unknown>, 'ratio' | 'low' | 'high'> {
  const sorted = [...ratios].sort((x, y) => x - y);
  return { ratio: quantile(sorted, 0.5), low: quantile(sorted, 0.25), high: quantile(sorted, 0.75) };
}

/** The median of `xs` by `key` (the element itself, not an average of two). */
export function medianBy<T>(xs: readonly T[], key: (x: T) => number): T {
  return [...xs].sort((x, y) => key(x) - key(y))[Math.floor(xs.length / 2)]!;
}

/** `q` in [0, 1] of sorted numbers, by the nearest rank. */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))]!;
}

/** "1.12× (1.08–1.15)": a paired ratio with its quartiles. */
export const formatRatio = (p: Pick<Paired<unknown>, 'ratio' | 'low' | 'high'>): string =>
  `${p.ratio.toFixed(2)}× (${p.low.toFixed(2)}–${p.high.toFixed(2)})`;

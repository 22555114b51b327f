// Wall-clock times as ISO strings, for the per-call `when` of metadata and monitoring records.

let lastMs = Number.NaN;
let lastIso = '';

/**
 * The ISO time (`new Date(ms).toISOString()`) of a wall-clock millisecond. `toISOString` costs
 * about a microsecond; the calls that start in one millisecond (many, under load) share a string.
 */
export function isoTime(ms: number): string {
  const whole = Math.floor(ms);
  if (whole !== lastMs) {
    lastIso = new Date(whole).toISOString();
    lastMs = whole;
  }
  return lastIso;
}

// Wall-clock times as ISO strings, for the per-call `when` of metadata and monitoring records.

let lastMs = Number.NaN;
let lastIso = '';
/** The second `prefix` is of (its first millisecond), and its ISO text up to the milliseconds (`YYYY-MM-DDTHH:MM:SS.`). */
let secondMs = Number.NaN;
let prefix = '';

/**
 * The ISO time (`new Date(ms).toISOString()`) of a wall-clock millisecond. `toISOString` (a `Date`
 * and a formatted string) costs about a microsecond, and a server's requests rarely share a
 * millisecond once it is busy enough to need them to: the calls in one millisecond share a
 * string, and those in one second share the text up to the milliseconds, so only the three digits
 * are written.
 */
export function isoTime(ms: number): string {
  const whole = Math.floor(ms);
  if (whole === lastMs) return lastIso;
  const millis = ((whole % 1000) + 1000) % 1000; // also for times before 1970
  const second = whole - millis;
  if (second !== secondMs) {
    const iso = new Date(second).toISOString();
    prefix = iso.slice(0, iso.length - 4); // without '000Z' (years past 9999 are longer)
    secondMs = second;
  }
  lastIso = `${prefix}${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
  lastMs = whole;
  return lastIso;
}

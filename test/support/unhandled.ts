// Errors RxJS reports as nobody's to catch (`config.onUnhandledError`, where rxserve's own
// subscribers report a throw from downstream too): collected for one test instead of thrown on a
// later timer, and the previous handler put back however the test ends.
import { config } from 'rxjs';

/** Runs `body` with every unhandled error pushed onto the list it is given. */
export async function collectUnhandled<T>(body: (reported: unknown[]) => T | Promise<T>): Promise<T> {
  const previous = config.onUnhandledError;
  const reported: unknown[] = [];
  config.onUnhandledError = (error) => void reported.push(error);
  try {
    return await body(reported);
  } finally {
    config.onUnhandledError = previous;
  }
}

// Models for worker threads: plain JS modules, referenced as { module, export }.
import { Model } from 'rxserve';

/** Echoes its input; with `crash: true` it kills its worker thread (an uncaught throw). */
export class Crashy extends Model {
  predict(body) {
    if (body.crash) {
      setImmediate(() => {
        throw new Error('native library fault (simulated)');
      });
      return new Promise(() => {}); // never answers: the thread dies first
    }
    return body;
  }
}

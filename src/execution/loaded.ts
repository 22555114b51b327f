// Whether a session's models have loaded, known synchronously (a V2 `ready` answers at once).
import type { ExecutorSession } from './executor.js';

const loaded = new WeakSet<ExecutorSession>();

/**
 * Starts watching a session's load; call it where the session is opened. A `ready` promise tells
 * its outcome only a microtask after it settles, so a step subscribed later to a session that
 * loaded long ago would otherwise take its first event for one arriving during the load.
 */
export function trackLoad<S extends ExecutorSession>(session: S): S {
  if (session.ready === undefined) loaded.add(session);
  else
    session.ready.then(
      () => void loaded.add(session),
      () => undefined, // a load failure is reported through the session's hooks
    );
  return session;
}

/** True once every model of the session has loaded (a session without `ready` is loaded at once). */
export function isLoaded(session: ExecutorSession): boolean {
  return session.ready === undefined || loaded.has(session);
}

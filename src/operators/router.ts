import * as t from 'io-ts';
import { defer, groupBy, map, mergeMap, NEVER, startWith, Subject, switchMap, timer, type OperatorFunction } from 'rxjs';
import { NonEmptyString, decodeOrThrow, fn, positiveInt, strict } from '../decode.js';
import { ConfigError, RouteNotFoundError, toError } from '../errors.js';
import { isServingEvent, withError, type ServingEvent } from '../event.js';
import { notAnEvent } from './internal/dispatch.js';

/** Configuration of a `router` step (MLRun's RouterStep). */
export interface RouterConfig {
  /** Step name; default `'router'`. */
  readonly name?: string;
  /**
   * The route key of an event; `undefined` sends it to `defaultRoute`. Typed like a selector
   * function: it may declare the body it expects (`(e: ServingEvent<{ risk: number }>) => ...`),
   * as the router cannot check bodies for you.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a key function typed for its own body must be assignable (above)
  readonly key: (event: ServingEvent<any>) => string | undefined;
  /** One pipeline per route key (a `modelRunner`, a `pipe()` of steps, ...). */
  readonly routes: Readonly<Record<string, OperatorFunction<ServingEvent, ServingEvent>>>;
  /** The route for events whose key has no route. */
  readonly defaultRoute?: string;
  /**
   * A route idle this long is released: its pipeline completes (after its events in flight) and
   * is subscribed afresh, models loaded again, on its next event. Default 60,000 ms; `Infinity`
   * keeps routes until the source ends.
   */
  readonly idleMs?: number;
}

export const RouterConfigCodec = strict(
  'RouterConfig',
  {
    key: fn<RouterConfig['key']>('a function (event) => route key'),
    routes: t.record(t.string, fn<OperatorFunction<ServingEvent, ServingEvent>>('an operator')),
  },
  { name: NonEmptyString, defaultRoute: t.string, idleMs: positiveInt(true) },
);

const DEFAULT_IDLE_MS = 60_000;

/**
 * Sends each event down one of several pipelines, chosen by a key.
 *
 * Built on `groupBy`, one group per route (not per raw key, so groups stay as few as the routes),
 * each group piped through its route's operator; a route idle for `idleMs` is released so it
 * does not hold resources. An event whose key has no route and no `defaultRoute` leaves errored
 * with `RouteNotFoundError` listing the routes; a key function that throws fails that event.
 * Errored events pass through untouched. Order is kept within a route, not across routes.
 *
 * ## Example
 * ```ts
 * import { router, modelRunner } from 'rxserve';
 * events$.pipe(router({
 *   key: (e) => e.path?.split('/')[3],            // '/v2/models/<name>/infer'
 *   routes: { m1: modelRunner({ models: [m1] }), m2: modelRunner({ models: [m2] }) },
 * }));
 * ```
 * @param config Key function, routes, default route and idle time; validated now.
 */
export function router(config: RouterConfig): OperatorFunction<ServingEvent, ServingEvent> {
  const { name = 'router', key, routes, defaultRoute, idleMs = DEFAULT_IDLE_MS } = decodeOrThrow(RouterConfigCodec, config, 'router');
  const routeNames = Object.keys(routes);
  if (routeNames.length === 0) {
    throw new ConfigError([{ path: 'router.routes', expected: 'at least one route', actual: '{}' }]);
  }
  if (defaultRoute !== undefined && !Object.hasOwn(routes, defaultRoute)) {
    throw new ConfigError([
      { path: 'router.defaultRoute', expected: `one of the routes (${routeNames.join(', ')})`, actual: `'${defaultRoute}'` },
    ]);
  }

  // An event becomes [route, event]; `null` route means "emit as it is" (errored, or failed here).
  const classify = (event: ServingEvent): readonly [string | null, ServingEvent] => {
    // Thrown inside map(): the stream errors with it, where the subscriber can catch it.
    if (!isServingEvent(event)) throw notAnEvent(event, 'router', name);
    if (event.error !== undefined) return [null, event];
    let routeKey: string | undefined;
    try {
      routeKey = key(event);
    } catch (thrown) {
      return [null, withError(event, toError(thrown), name)];
    }
    if (routeKey !== undefined && Object.hasOwn(routes, routeKey)) return [routeKey, event];
    if (defaultRoute !== undefined) return [defaultRoute, event];
    return [null, withError(event, new RouteNotFoundError(routeKey, routeNames, name), name)];
  };

  // Groups are per route, so mergeMap holds at most routes + 1 inner subscriptions.
  // Idle release listens to a per-route activity subject, not to the group itself: in RxJS 7 a
  // subscription to the group counts as an active group and would keep the source subscribed
  // after the downstream has unsubscribed.
  return (source) =>
    defer(() => {
      const activity = new Map<string, Subject<void>>();
      const activityOf = (route: string): Subject<void> => {
        let subject = activity.get(route);
        if (subject === undefined) activity.set(route, (subject = new Subject<void>()));
        return subject;
      };
      return source.pipe(
        map((event) => {
          const classified = classify(event);
          if (classified[0] !== null) activity.get(classified[0])?.next();
          return classified;
        }),
        groupBy(([route]) => route, {
          element: ([, event]) => event,
          duration:
            idleMs === Infinity
              ? undefined
              : (group) =>
                  group.key === null
                    ? NEVER
                    : activityOf(group.key).pipe(
                        startWith(undefined),
                        switchMap(() => timer(idleMs)),
                      ),
        }),
        mergeMap((group) => (group.key === null ? group : group.pipe(routes[group.key]))),
      );
    });
}

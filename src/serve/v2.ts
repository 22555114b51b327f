// The Open Inference Protocol (KServe v2) paths: the model name of an infer path.
import type { ServingEvent } from '../event.js';

// Matched at the end of the path, so a plugin mounted under a prefix ('/api/v2/models/...') works too.
const INFER_PATH = /(?:^|\/)v2\/models\/([^/]+)(?:\/versions\/[^/]+)?\/infer\/?$/;

/**
 * The model name of an Open Inference Protocol infer request, for a router's key.
 *
 * `POST /v2/models/<name>[/versions/<v>]/infer` reaches the pipeline as an ordinary event whose
 * `path` is that URL path; this returns `<name>` (URL-decoded), or `undefined` for any other path
 * (so the router sends it to its `defaultRoute`, or fails it with `RouteNotFoundError`: 404).
 *
 * ## Example
 * ```ts
 * import { router, serve, v2ModelName } from 'rxserve';
 * const pipeline = router({ key: v2ModelName, routes: { m1: graph.modelRunner({ models: [m1] }) } });
 * await serve(pipeline, { graph, port: 0 });
 * // POST /v2/models/m1/infer → route m1
 * ```
 */
export function v2ModelName(event: ServingEvent): string | undefined {
  const match = event.path === undefined ? null : INFER_PATH.exec(event.path);
  if (match === null) return undefined;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1];
  }
}

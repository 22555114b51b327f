// The Open Inference Protocol (KServe v2) paths: the model name of an infer path, and what serve()'s
// GET /v2 routes answer for a pipeline that is one of the router family (docs/design.md §18).
import type { ServingEvent } from '../event.js';
import { v2ServerOf } from '../operators/internal/v2.js';

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

/** `GET /v2` (server metadata, as MLRun's routers answer it): the router class's name, or `'rxserve'`, protocol `v2`. */
export function serverMetadata(pipeline: unknown): { name: string; version: string; extensions: string[] } {
  return { name: v2ServerOf(pipeline)?.kind ?? 'rxserve', version: 'v2', extensions: [] };
}

/**
 * What `GET /v2/models` lists: the `models` option when given, else what the pipeline serves when
 * it is one of the router family (its routes, and an ensemble's own name), else `fallback()` (the
 * graph's endpoints).
 */
export function listedModels(pipeline: unknown, models: readonly string[] | undefined, fallback: () => string[]): string[] {
  if (models) return [...models];
  const server = v2ServerOf(pipeline);
  return server ? [...server.models] : fallback();
}

/**
 * The path that asks the pipeline for a model's metadata (`<prefix>/<name>[/versions/<v>]/metadata`),
 * when the pipeline is a modelRouter or a votingEnsemble: `GET /v2/models/<name>` is then answered
 * by the router (its `{ name, version, inputs, outputs }`, OnnxModel's tensors included); else
 * `undefined` (serve() answers from the graph's entry).
 */
export function metadataPath(pipeline: unknown, name: string, version: string | undefined): string | undefined {
  const prefix = v2ServerOf(pipeline)?.prefix;
  if (prefix === undefined) return undefined;
  const model = encodeURIComponent(name);
  return version === undefined ? `${prefix}/${model}/metadata` : `${prefix}/${model}/versions/${encodeURIComponent(version)}/metadata`;
}

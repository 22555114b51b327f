// Codecs the serving options share.
import { guard } from '../decode.js';
import { isSessionProvider } from '../execution/provider.js';
import type { Graph } from '../graph/graph.js';

/** A graph made by `createGraph()` (checked by shape, so a second copy of rxserve's graph passes too). */
export const GraphCodec = guard<Graph>(
  'a graph made by createGraph()',
  (u) => isSessionProvider(u) && typeof (u as Graph).ready === 'function' && typeof (u as Graph).endpointNames === 'function',
);

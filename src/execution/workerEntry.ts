// Where the built worker entries are: workers and child processes load built JS, never sources.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The path of a built worker entry: `dist/execution/<name>.js` (ESM, whichever format loaded
 * rxserve). When rxserve runs from its sources (its own tests), the built copy in `dist/` is
 * used, so build first.
 */
export function workerEntry(name: 'threadWorker' | 'processWorker'): string {
  const here = import.meta.url;
  const candidates = [`./execution/${name}.js`, `../execution/${name}.js`, `../../dist/execution/${name}.js`];
  for (const candidate of candidates) {
    const path = fileURLToPath(new URL(candidate, here));
    if (existsSync(path)) return path;
  }
  throw new Error(`rxserve: the worker entry '${name}' was not found next to ${here}; run the build (npm run build)`);
}

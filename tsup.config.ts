import { defineConfig } from 'tsup';

export default defineConfig([
  // The public entries. `splitting` is on for CJS too, so the error classes (and every
  // other shared module) live in one chunk per format: `instanceof` holds across `rxserve`,
  // `rxserve/operators`, `rxserve/testing` and `rxserve/llm`.
  {
    entry: {
      index: 'src/index.ts',
      'operators/index': 'src/operators/index.ts',
      'testing/index': 'src/testing/index.ts',
      'llm/index': 'src/llm/index.ts',
      'streams/index': 'src/streams/index.ts',
      // What model modules import (workers load it: no RxJS, io-ts or pools behind it).
      'model/index': 'src/model/index.ts',
      // The rxserve command's code (bin/rxserve.mjs runs it); beside the entries so it shares their chunks.
      'cli/main': 'src/cli/main.ts',
    },
    format: ['esm', 'cjs'],
    // RXSERVE_BUILD_DTS=0 skips the declarations (test/package.spec.ts's fresh-checkout build only
    // needs to see that `prepare` builds; the declarations are built and checked by `npm test`).
    dts: process.env.RXSERVE_BUILD_DTS !== '0',
    splitting: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    external: ['rxjs', 'piscina', 'ioredis', 'yaml'],
    // import.meta.url in the CJS build (worker entries are found relative to it).
    shims: true,
  },
  // Worker-thread and child-process entries: loaded by piscina and fork(), never imported by
  // users, so ESM only (the thread entry uses top-level await to load its models at start).
  {
    entry: {
      'execution/threadWorker': 'src/execution/worker/threadWorker.ts',
      'execution/processWorker': 'src/execution/worker/processWorker.ts',
    },
    format: ['esm'],
    splitting: true,
    sourcemap: true,
    clean: false,
    target: 'node20',
    external: ['rxjs', 'piscina', 'rxserve'],
  },
]);

import { defineConfig } from 'tsup';

// One build for the three public entries. `splitting` is on for CJS too, so the error classes
// (and every other shared module) live in one chunk per format: `instanceof` holds across
// `rxserve`, `rxserve/operators` and `rxserve/testing`.
export default defineConfig({
  entry: {
    index: 'src/index.ts',
    'operators/index': 'src/operators/index.ts',
    'testing/index': 'src/testing/index.ts',
    // Loaded by worker threads and child processes, never imported by users.
    'execution/threadWorker': 'src/execution/threadWorker.ts',
    'execution/processWorker': 'src/execution/processWorker.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  splitting: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  external: ['rxjs', 'piscina'],
  // import.meta.url in the CJS build (the worker entries are found relative to it).
  shims: true,
});

// Pool sizing and worker options (MLRun's configure_pool_resource), validated once.
import { availableParallelism } from 'node:os';
import { decodeOrThrow, guard, nonNegativeInt, positiveInt, strict } from '../decode.js';
import type { Piscina } from 'piscina';

/** Worker pool options of a step (`pool`) or a graph (`configurePoolResource`). */
export interface PoolOptions {
  /** Threads of a 'thread_pool' at most; default 32. */
  readonly maxThreads?: number;
  /** Processes of a 'process_pool' at most; default the CPU count. */
  readonly maxProcesses?: number;
  /** Workers per model using the pool: size = min(models × poolFactor, max); default 1. */
  readonly poolFactor?: number;
  /** A piscina pool of your own running rxserve's thread worker entry; not destroyed by rxserve. */
  readonly piscina?: Piscina;
  /** Calls per message at most when workers are busy; default 64 (1 disables batching). */
  readonly maxBatch?: number;
  /** How long a cancelled call may run on before its worker is terminated; default 1000 ms. */
  readonly cancelGraceMs?: number;
}

const PiscinaCodec = guard<Piscina>('a Piscina instance', (u) => typeof (u as Piscina | null)?.run === 'function');

export const PoolOptionsCodec = strict(
  'PoolOptions',
  {},
  {
    maxThreads: positiveInt(),
    maxProcesses: positiveInt(),
    poolFactor: positiveInt(),
    piscina: PiscinaCodec,
    maxBatch: positiveInt(),
    cancelGraceMs: nonNegativeInt(),
  },
);

export interface ResolvedPoolOptions {
  readonly maxThreads: number;
  readonly maxProcesses: number;
  readonly poolFactor: number;
  readonly maxBatch: number;
  readonly cancelGraceMs: number;
}

export function resolvePoolOptions(options: PoolOptions, path = 'pool'): ResolvedPoolOptions {
  const decoded = decodeOrThrow(PoolOptionsCodec, options, path);
  return {
    maxThreads: decoded.maxThreads ?? 32,
    maxProcesses: decoded.maxProcesses ?? availableParallelism(),
    poolFactor: decoded.poolFactor ?? 1,
    maxBatch: decoded.maxBatch ?? 64,
    cancelGraceMs: decoded.cancelGraceMs ?? 1000,
  };
}

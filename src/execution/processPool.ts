// 'process_pool' and 'dedicated_process': models in child processes over IPC, each process
// loading its models once, replaced with backoff when it dies, ModelLoadError when loads keep failing.
// Over 300 lines: the child worker and the transport that keeps N of them alive share their restart,
// ref/unref and close rules.
import { fork, type ChildProcess } from 'node:child_process';
import { ModelLoadError, WorkerCrashedError, toError } from '../errors.js';
import type { ModelEntry } from '../model/entry.js';
import { workerEntry } from './workerEntry.js';
import type { Executor, ExecutorHooks, ExecutorSession } from './executor.js';
import { PooledSession, routePartial, type BatchReceiver, type BatchTransport, type SentBatch } from './pooled.js';
import { resolvePoolOptions, type PoolOptions } from './poolOptions.js';
import type { ToChild, ToParent } from './worker/processWorker.js';
import { deserializeError, flatten, inspectForWorker, type WireBatch, type WireResult } from './wire/protocol.js';
import { workerSpecKey } from './specs.js';

/** Restart policy of crashed processes. */
const RESTART_BASE_MS = 100;
const RESTART_MAX_MS = 5_000;
/** Consecutive failed starts (load failures or deaths before ready) before giving up. */
const MAX_FAILED_STARTS = 3;
/** Batches a process holds at once (the next one is queued when the current ends). */
const BATCHES_PER_PROCESS = 2;
/** How long close() waits for a process to close its models before killing it. */
const CLOSE_TIMEOUT_MS = 2_000;

/**
 * The 'process_pool' executor: `min(models × poolFactor, maxProcesses)` child processes, each
 * loading every model of the step once; calls go to the least busy ready process.
 */
export function processPoolExecutor(options: PoolOptions = {}): Executor {
  return {
    open(models, hooks) {
      const resolved = resolvePoolOptions(options);
      const size = Math.max(1, Math.min(models.length * resolved.poolFactor, resolved.maxProcesses));
      return openProcesses(models, size, hooks, resolved);
    },
  };
}

/**
 * The 'dedicated_process' executor: one child process per model, loaded once at start; its
 * traffic waits until `load()` finished, and a crashed process is restarted with backoff.
 */
export function dedicatedProcessExecutor(options: PoolOptions = {}): Executor {
  return {
    open(models, hooks) {
      const resolved = resolvePoolOptions(options);
      const sessions = models.map((m) => openProcesses([m], 1, hooks, resolved));
      if (sessions.length === 1) return sessions[0];
      const byModel = new Map(models.map((m, i) => [m.endpointName, sessions[i]]));
      return {
        ready: Promise.all(sessions.map((s) => s.ready)).then(() => undefined),
        invoke: (name, input, context) => byModel.get(name)!.invoke(name, input, context),
        invokeBatch: (name, inputs, contexts) => byModel.get(name)!.invokeBatch!(name, inputs, contexts),
        close: async () => {
          await Promise.all(sessions.map((s) => s.close()));
        },
      };
    },
  };
}

function openProcesses(
  models: readonly ModelEntry[],
  size: number,
  hooks: ExecutorHooks,
  options: { maxBatch: number; cancelGraceMs: number },
): ExecutorSession {
  const specKeys = new Map(models.map((m) => [m.endpointName, workerSpecKey(m, hooks.step)]));
  const transport = new ProcessTransport(size, models, [...specKeys.values()], hooks);
  return new PooledSession(specKeys, transport, options, (input) => ({
    input,
    transfer: [],
    problem: inspectForWorker(input, 'input').problem,
  }));
}

/** One child process and the batches it runs. */
class ChildWorker {
  readonly process: ChildProcess;
  readonly loaded: Promise<void>;
  batches = 0;
  private nextBatchId = 0;
  private readonly pending = new Map<number, { resolve: (r: WireResult[]) => void; reject: (e: Error) => void }>();
  private exitReason: string | undefined;
  private killedFor: string | undefined;
  exited = false;
  /**
   * Whether this process keeps the parent's event loop alive. Only while it matters: loading
   * (someone may await graph.ready()), running batches, closing. An idle process is unref'd,
   * process and IPC channel both, as piscina does with idle threads: a forgotten graph.close()
   * or a step never unsubscribed must not hang the process.
   */
  private keepsAlive = true;
  private isReady = false;
  private closing = false;

  constructor(
    specKeys: readonly string[],
    private readonly label: string,
    onExit: (worker: ChildWorker, reason: string, wasReady: boolean) => void,
  ) {
    this.process = fork(workerEntry('processWorker'), [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let ready = false;
    let resolveLoaded!: () => void;
    let rejectLoaded!: (e: Error) => void;
    this.loaded = new Promise<void>((resolve, reject) => {
      resolveLoaded = resolve;
      rejectLoaded = reject;
    });
    this.loaded.catch(() => undefined);
    const waiting = new Set(specKeys);
    this.process.on('message', (message: ToParent) => {
      switch (message.type) {
        case 'loaded':
          waiting.delete(message.key);
          if (waiting.size === 0 && !ready) {
            ready = true;
            this.isReady = true;
            this.updateKeepAlive();
            resolveLoaded();
          }
          break;
        case 'loadFailed': {
          const cause = deserializeError(message.error);
          const name = (JSON.parse(message.key) as { endpointName: string }).endpointName;
          rejectLoaded(cause instanceof ModelLoadError ? cause : new ModelLoadError(name, cause.message, { cause }));
          this.kill('its model failed to load');
          break;
        }
        case 'results':
          this.batches--;
          this.pending.get(message.batchId)?.resolve(message.results);
          this.pending.delete(message.batchId);
          this.updateKeepAlive();
          break;
        case 'partial':
          routePartial(message.id, message.data);
          break;
        case 'closed':
          break;
      }
    });
    this.process.on('error', (error) => {
      this.exitReason ??= `could not run: ${error.message}`;
    });
    this.process.on('exit', (code, signal) => {
      this.exited = true;
      const reason = this.killedFor ?? this.exitReason ?? (signal ? `was killed by ${signal}` : `exited with code ${code}`);
      const error = new WorkerCrashedError(`the process of ${this.label} ${reason}`);
      for (const { reject } of this.pending.values()) reject(error);
      this.pending.clear();
      this.batches = 0;
      rejectLoaded(new ModelLoadError(this.label, `its process ${reason} before the model loaded`));
      onExit(this, reason, ready);
    });
    for (const key of specKeys) this.post({ type: 'load', key });
  }

  run(batch: WireBatch): Promise<WireResult[]> {
    const batchId = this.nextBatchId++;
    this.batches++;
    return new Promise<WireResult[]>((resolve, reject) => {
      const fail = (error: Error) => {
        this.pending.delete(batchId);
        this.batches--;
        this.updateKeepAlive();
        reject(error);
      };
      this.pending.set(batchId, { resolve, reject });
      this.updateKeepAlive();
      if (this.exited || !this.process.connected) return fail(new WorkerCrashedError(`the process of ${this.label} is gone`));
      try {
        this.process.send({ type: 'run', batchId, batch } satisfies ToChild);
      } catch (error) {
        // The serializer refused the batch (something the inspection did not foresee): the process is fine.
        fail(
          new TypeError(`a batch of ${batch.calls.length} call(s) could not be sent to ${this.label}: ${toError(error).message}`, {
            cause: error,
          }),
        );
      }
    });
  }

  post(message: ToChild): boolean {
    if (this.exited || !this.process.connected) return false;
    try {
      this.process.send(message);
      return true;
    } catch {
      return false;
    }
  }

  kill(reason: string): void {
    if (this.exited) return;
    this.killedFor ??= `was terminated: ${reason}`;
    this.process.kill('SIGKILL');
  }

  private updateKeepAlive(): void {
    const wanted = !this.isReady || this.pending.size > 0 || this.closing;
    if (wanted === this.keepsAlive || this.exited) return;
    this.keepsAlive = wanted;
    if (wanted) {
      this.process.ref();
      this.process.channel?.ref();
    } else {
      this.process.unref();
      this.process.channel?.unref();
    }
  }

  async close(): Promise<void> {
    if (this.exited) return;
    // Whoever awaits close() must see it finish.
    this.closing = true;
    this.updateKeepAlive();
    const exited = new Promise<void>((resolve) => this.process.once('exit', () => resolve()));
    this.killedFor ??= 'was closed';
    if (!this.post({ type: 'close' })) this.process.kill('SIGKILL');
    const timer = setTimeout(() => this.process.kill('SIGKILL'), CLOSE_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}

/** Keeps `size` child processes alive and sends batches to the least busy ready one. */
class ProcessTransport implements BatchTransport {
  readonly ready: Promise<void>;
  readonly workerKind = 'process';
  /** Resolved when a process becomes ready (see canSend). */
  private capacity: { promise: Promise<void>; resolve: () => void } | undefined;
  private readonly workers = new Set<ChildWorker>();
  private readonly readyWorkers = new Set<ChildWorker>();
  private failedStarts = 0;
  private closing = false;
  private readonly restarts = new Set<ReturnType<typeof setTimeout>>();
  private readonly label: string;
  readonly slots: number;

  constructor(
    size: number,
    models: readonly ModelEntry[],
    private readonly specKeys: readonly string[],
    private readonly hooks: ExecutorHooks,
  ) {
    this.label = models.length === 1 ? `'${models[0].endpointName}'` : `step '${hooks.step}'`;
    this.slots = size * BATCHES_PER_PROCESS;
    const first: Promise<void>[] = [];
    for (let i = 0; i < size; i++) first.push(this.spawn());
    // Traffic starts once every first process has loaded its models; a model that cannot load
    // at start fails the pipeline at once (restarts are for crashes, not for broken models).
    this.ready = Promise.all(first).then(
      () => undefined,
      (error: Error) => {
        this.hooks.fail(error);
        void this.close();
        throw error;
      },
    );
    this.ready.catch(() => undefined);
  }

  private spawn(): Promise<void> {
    const worker = new ChildWorker(this.specKeys, this.label, (w, reason, wasReady) => this.onExit(w, reason, wasReady));
    this.workers.add(worker);
    return worker.loaded.then(() => {
      if (worker.exited || this.closing) return;
      this.failedStarts = 0;
      this.readyWorkers.add(worker);
      const capacity = this.capacity;
      this.capacity = undefined;
      capacity?.resolve();
    });
  }

  private onExit(worker: ChildWorker, reason: string, wasReady: boolean): void {
    this.workers.delete(worker);
    this.readyWorkers.delete(worker);
    if (this.closing) return;
    if (!wasReady) this.failedStarts++;
    if (this.failedStarts >= MAX_FAILED_STARTS) {
      this.closing = true;
      this.hooks.fail(
        new ModelLoadError(this.label, `its process failed to start ${this.failedStarts} times in a row (last: ${reason}); not restarting`),
      );
      return;
    }
    const delay = Math.min(RESTART_BASE_MS * 2 ** this.failedStarts, RESTART_MAX_MS);
    // Not unref'd: calls may be waiting for this replacement, and close() clears it.
    const timer = setTimeout(() => {
      this.restarts.delete(timer);
      // A replacement that fails to load counts as a failed start (handled in onExit).
      if (!this.closing) this.spawn().catch(() => undefined);
    }, delay);
    this.restarts.add(timer);
  }

  /** True when a ready process can take a batch now; else a promise of the next ready process. */
  canSend(): true | Promise<void> {
    for (const worker of this.readyWorkers) if (worker.batches < BATCHES_PER_PROCESS) return true;
    if (this.capacity === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.capacity = { promise, resolve };
    }
    return this.capacity.promise;
  }

  send(batch: WireBatch, _transfer: ArrayBuffer[], receiver: BatchReceiver): SentBatch {
    let chosen: ChildWorker | undefined;
    for (const worker of this.readyWorkers) {
      if (worker.batches < BATCHES_PER_PROCESS && (chosen === undefined || worker.batches < chosen.batches)) chosen = worker;
    }
    if (chosen === undefined) throw new WorkerCrashedError(`no process of ${this.label} is ready`);
    const worker = chosen;
    void worker.run(batch).then(
      (results) => receiver.answered(flatten(results)),
      (error: unknown) => receiver.failed(error),
    );
    return {
      cancel: (id) => void worker.post({ type: 'cancel', id }),
      terminate: (reason) => worker.kill(reason),
    };
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const timer of this.restarts) clearTimeout(timer);
    this.restarts.clear();
    await Promise.all([...this.workers].map((w) => w.close()));
  }
}

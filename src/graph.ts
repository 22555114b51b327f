// createGraph(): what the steps of one serving graph share: shared models reached through
// proxies, unique endpoint names, worker pool settings, monitoring, and the models' lifecycle.
import * as t from 'io-ts';
import { filter, Observable, Subject, take, type OperatorFunction } from 'rxjs';
import { DotPath, NonEmptyString, decodeOrThrow, positiveInt, strict } from './config.js';
import { ConfigError, ModelLoadError, RxServeError, toError } from './errors.js';
import type { ServingEvent } from './event.js';
import { createDefaultExecutor } from './execution/defaultExecutor.js';
import type { Executor, ExecutorHooks, ExecutorSession } from './execution/executor.js';
import { PoolOptionsCodec, type PoolOptions } from './execution/poolOptions.js';
import type { LLMPromptArtifact, ModelArtifact } from './model/artifact.js';
import { CreationStrategy, decodeModelEntries, type ExecutionMechanism, type ModelEntry } from './model/entry.js';
import type { PredictContext } from './model/model.js';
import type { EndpointRecord } from './monitoring/record.js';
import { GraphMonitor, type LaneStats, type MonitorObserver } from './monitoring/monitor.js';
import { EndpointRegistry } from './monitoring/registry.js';
import { modelClassName } from './model/registry.js';
import { CallContext } from './operators/internal/callContext.js';
import { settle } from './operators/internal/settle.js';
import { modelRunner, type ModelRunnerConfig } from './operators/modelRunner.js';
import { router, type RouterConfig } from './operators/router.js';

/**
 * A model loaded once per graph and served to every proxy of it: a model entry's fields (its
 * `inputPath` / `resultPath` are inherited by every proxy) under a `name` instead of an endpoint name.
 */
export interface SharedModelConfig
  extends Pick<ModelEntry, 'modelClass' | 'modelArtifact' | 'inputs' | 'outputs' | 'inputPath' | 'resultPath' | 'params'> {
  /** The shared model's name (proxies may name it as `sharedModelName`). */
  readonly name: string;
  /** Any mechanism but 'shared_executor'. Worker mechanisms run it in one thread/process: one instance. */
  readonly executionMechanism: Exclude<ExecutionMechanism, 'shared_executor'>;
  /** Calls running at once across all proxies; default unlimited. */
  readonly maxInFlight?: number;
  /** Replace a shared model of the same name. */
  readonly override?: boolean;
}

/** A proxy: its own endpoint (name, labels, monitoring) over a shared model. */
export interface SharedModelProxyConfig {
  readonly endpointName: string;
  /** Matched against the shared models' artifact URIs (a prompt artifact: its parent model's URI). */
  readonly modelArtifact?: ModelArtifact | LLMPromptArtifact;
  readonly sharedModelName?: string;
  readonly labels?: Readonly<Record<string, string>> | readonly string[];
  readonly creationStrategy?: CreationStrategy;
}

/** Options of `createGraph`. */
export interface GraphOptions {
  readonly name?: string;
  /**
   * Track the graph's model endpoints: a record per call on `monitoring$` (kept with
   * `samplingPercentage`, default 100; errors always kept) and the endpoint registry (persisted
   * to `registryPath` when given). Without it the graph is untracked and records nothing.
   */
  readonly monitoring?: { readonly samplingPercentage?: number; readonly registryPath?: string };
}

/** A model endpoint as `graph.endpoint(name)` describes it. */
export interface GraphEndpoint {
  readonly endpointName: string;
  readonly step: string;
  readonly executionMechanism: ExecutionMechanism;
  readonly inputs?: string[];
  readonly outputs?: string[];
}

/** Where an endpoint name is used, for uniqueness errors. */
interface EndpointUse {
  readonly endpointName: string;
  readonly where: string;
}

const Percentage = new t.Type<number, number, unknown>(
  'a percentage above 0 and at most 100',
  (u): u is number => typeof u === 'number' && u > 0 && u <= 100,
  (u, c) => (typeof u === 'number' && u > 0 && u <= 100 ? t.success(u) : t.failure(u, c)),
  t.identity,
);

const GraphOptionsCodec = strict(
  'GraphOptions',
  {},
  { name: NonEmptyString, monitoring: strict('MonitoringOptions', {}, { samplingPercentage: Percentage, registryPath: NonEmptyString }) },
);

const SharedModelCodec = strict(
  'SharedModelConfig',
  { name: NonEmptyString, modelClass: t.unknown, executionMechanism: t.string },
  {
    modelArtifact: t.UnknownRecord,
    inputs: t.array(t.string),
    outputs: t.array(t.string),
    inputPath: DotPath,
    resultPath: DotPath,
    params: t.UnknownRecord,
    maxInFlight: positiveInt(true),
    override: t.boolean,
  },
);

const ProxyCodec = strict(
  'SharedModelProxyConfig',
  { endpointName: NonEmptyString },
  {
    modelArtifact: t.UnknownRecord,
    sharedModelName: NonEmptyString,
    labels: t.union([t.record(t.string, t.string), t.array(t.string)], 'Record<string, string> | string[]'),
    creationStrategy: CreationStrategy,
  },
);

/** The artifact URI a proxy or shared model is matched by: a prompt's parent model URI. */
function matchUri(artifact: ModelArtifact | LLMPromptArtifact | undefined): string | undefined {
  if (artifact === undefined) return undefined;
  if ('model' in artifact && artifact.model !== undefined) return artifact.model.uri ?? artifact.model.key;
  return artifact.uri ?? artifact.key;
}

/**
 * Creates a serving graph: the object that holds what its steps share.
 *
 * Steps made with `graph.modelRunner()` (or `modelRunner({ graph })`) have their models owned by
 * the graph: loaded by `ready()` (one at a time) or on first use, shared by every subscription,
 * closed by `close()`. Shared models are loaded once and reached from any step through proxies,
 * each its own endpoint. Endpoint names are unique across the graph, routes included.
 *
 * ## Example
 * ```ts
 * import { createGraph } from 'rxserve';
 * const graph = createGraph({ name: 'llm-graph' });
 * graph.addSharedModel({ name: 'llm', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact });
 * const finance = graph.sharedModelProxy({ endpointName: 'finance', modelArtifact: financePrompt });
 * const travel = graph.sharedModelProxy({ endpointName: 'travel', modelArtifact: travelPrompt });
 * await graph.ready();
 * events$.pipe(graph.modelRunner({ models: [finance, travel] }));
 * // later: await graph.close();
 * ```
 */
export function createGraph(options: GraphOptions = {}): Graph {
  const decoded = decodeOrThrow(GraphOptionsCodec, options, 'createGraph');
  return new Graph(decoded.name ?? 'graph', decoded.monitoring);
}

/** What a subscription of a graph step tells the graph. */
export interface StepSubscriber {
  /** The graph's session failed (a model cannot load): error the stream. */
  fail(error: Error): void;
  /** The graph is closing: fail the calls in flight. */
  abort(error: Error): void;
  /** Its lanes' occupancy, for metrics. */
  lanes(): readonly LaneStats[];
}

/** A step's hold on its graph-owned session (see `Graph.bindStep`). */
export interface StepBinding {
  /** The step's session (opened on first use) for one subscription; `release` when it ends. */
  acquire(subscriber: StepSubscriber): { session: ExecutorSession; release(): void; monitor: GraphMonitor };
}

class StepRecord implements StepBinding {
  session: ExecutorSession | undefined;
  readonly subscribers = new Set<StepSubscriber>();
  constructor(
    readonly graph: Graph,
    readonly step: string,
    readonly models: readonly ModelEntry[],
    readonly executor: Executor,
  ) {}

  open(): ExecutorSession {
    if (this.graph.closed) throw new RxServeError(`graph '${this.graph.name}' is closed`);
    this.session ??= this.executor.open(this.models, {
      step: this.step,
      fail: (error) => {
        for (const s of this.subscribers) s.fail(error);
      },
    });
    return this.session;
  }

  acquire(subscriber: StepSubscriber) {
    const session = this.open();
    this.subscribers.add(subscriber);
    return { session, release: () => void this.subscribers.delete(subscriber), monitor: this.graph.monitor };
  }
}

/** A graph (see `createGraph`). */
export class Graph {
  /** One record per model call (filled by monitoring); completes on `close()`. */
  readonly monitoring$: Observable<EndpointRecord>;
  /** @internal */ readonly records = new Subject<EndpointRecord>();
  closed = false;
  private pool: PoolOptions = {};
  private readonly endpoints = new Map<string, EndpointUse>();
  private readonly shared = new Map<string, SharedModelServer>();
  private readonly steps: StepRecord[] = [];
  private stepCount = 0;
  private readyPromise: Promise<void> | undefined;

  /** @internal */ readonly monitor: GraphMonitor;
  /** One entry per model endpoint (tracked graphs: loaded, strategies applied and saved). */
  readonly endpointRegistry: EndpointRegistry;

  constructor(
    readonly name: string,
    monitoringOptions?: { samplingPercentage?: number; registryPath?: string },
  ) {
    this.monitoring$ = this.records.asObservable();
    this.monitor = new GraphMonitor(monitoringOptions !== undefined, monitoringOptions?.samplingPercentage ?? 100, this.records);
    this.endpointRegistry = new EndpointRegistry(monitoringOptions?.registryPath);
    if (monitoringOptions !== undefined) this.monitor.observers.add(this.endpointRegistry);
  }

  /** @internal Adds something that wants every call (an exporter). */
  observe(observer: MonitorObserver): void {
    this.monitor.observers.add(observer);
  }

  /** @internal */
  unobserve(observer: MonitorObserver): void {
    this.monitor.observers.delete(observer);
  }

  /** In-flight and queued calls per lane of every running graph step (read at scrape time). */
  laneStats(): LaneStats[] {
    return this.steps.flatMap((step) => [...step.subscribers].flatMap((s) => s.lanes()));
  }

  /** Worker pool limits for the graph's steps (a step's own `pool` wins) and its shared models. */
  configurePoolResource(options: Pick<PoolOptions, 'maxThreads' | 'maxProcesses' | 'poolFactor'>): void {
    const decoded = decodeOrThrow(PoolOptionsCodec, options, 'graph.configurePoolResource');
    this.pool = { ...this.pool, ...decoded };
  }

  /** Adds a model loaded once for the whole graph; reach it with `sharedModelProxy()`. */
  addSharedModel(config: SharedModelConfig): { readonly name: string } {
    const decoded = decodeOrThrow(SharedModelCodec, config, 'addSharedModel');
    if (decoded.executionMechanism === 'shared_executor') {
      throw new ConfigError([
        {
          path: 'addSharedModel.executionMechanism',
          expected: "the mechanism the shared model runs on ('naive', 'asyncio', 'thread_pool', 'process_pool', 'dedicated_process')",
          actual: "'shared_executor' (that is what its proxies use)",
        },
      ]);
    }
    if (this.shared.has(decoded.name) && !decoded.override) {
      throw new ConfigError([
        { path: 'addSharedModel.name', expected: 'a name not used by another shared model (or override: true)', actual: `'${decoded.name}'` },
      ]);
    }
    const [entry] = decodeModelEntries(
      [
        {
          endpointName: decoded.name,
          modelClass: config.modelClass,
          executionMechanism: decoded.executionMechanism,
          ...(config.modelArtifact ? { modelArtifact: config.modelArtifact } : {}),
          ...(decoded.inputPath ? { inputPath: decoded.inputPath } : {}),
          ...(decoded.resultPath ? { resultPath: decoded.resultPath } : {}),
          ...(decoded.inputs ? { inputs: decoded.inputs } : {}),
          ...(decoded.outputs ? { outputs: decoded.outputs } : {}),
          ...(decoded.params ? { params: decoded.params } : {}),
        },
      ],
      'addSharedModel',
    );
    this.shared.get(decoded.name)?.close();
    this.shared.set(decoded.name, new SharedModelServer(this, entry, decoded.maxInFlight ?? Infinity));
    return { name: decoded.name };
  }

  /**
   * A model entry for a step that reaches a shared model. The shared model is found by artifact
   * URI (a prompt artifact's parent model URI) or by `sharedModelName`; the proxy keeps its own
   * endpoint name, labels and creation strategy, and inherits the shared model's paths.
   */
  sharedModelProxy(config: SharedModelProxyConfig): ModelEntry {
    const decoded = decodeOrThrow(ProxyCodec, config, 'sharedModelProxy');
    const artifact = config.modelArtifact;
    const uri = matchUri(artifact);
    let server: SharedModelServer | undefined;
    if (uri !== undefined) {
      server = [...this.shared.values()].find((s) => matchUri(s.entry.modelArtifact) === uri);
      if (server === undefined) {
        throw new ConfigError([
          {
            path: 'sharedModelProxy.modelArtifact',
            expected: `the artifact of a shared model (shared: ${this.describeShared()})`,
            actual: `uri '${uri}'`,
          },
        ]);
      }
      if (decoded.sharedModelName !== undefined && decoded.sharedModelName !== server.entry.endpointName) {
        throw new ConfigError([
          {
            path: 'sharedModelProxy.sharedModelName',
            expected: `'${server.entry.endpointName}', the shared model whose artifact is '${uri}'`,
            actual: `'${decoded.sharedModelName}'`,
          },
        ]);
      }
    } else if (decoded.sharedModelName !== undefined) {
      server = this.shared.get(decoded.sharedModelName);
      if (server === undefined) {
        throw new ConfigError([
          {
            path: 'sharedModelProxy.sharedModelName',
            expected: `the name of a shared model (shared: ${this.describeShared()})`,
            actual: `'${decoded.sharedModelName}'`,
          },
        ]);
      }
    } else {
      throw new ConfigError([
        { path: 'sharedModelProxy', expected: 'a modelArtifact or a sharedModelName to find the shared model by' },
      ]);
    }
    server.proxies.set(decoded.endpointName, artifact);
    const { entry } = server;
    return Object.freeze({
      endpointName: decoded.endpointName,
      modelClass: entry.modelClass,
      executionMechanism: 'shared_executor',
      sharedModelName: entry.endpointName,
      ...(artifact ? { modelArtifact: artifact } : {}),
      ...(decoded.labels ? { labels: decoded.labels } : {}),
      ...(decoded.creationStrategy ? { creationStrategy: decoded.creationStrategy } : {}),
      ...(entry.inputPath ? { inputPath: entry.inputPath } : {}),
      ...(entry.resultPath ? { resultPath: entry.resultPath } : {}),
      ...(entry.inputs ? { inputs: entry.inputs } : {}),
      ...(entry.outputs ? { outputs: entry.outputs } : {}),
    } satisfies ModelEntry);
  }

  /** A `modelRunner` step whose models this graph owns. */
  modelRunner(config: Omit<ModelRunnerConfig, 'graph'>): OperatorFunction<ServingEvent, ServingEvent> {
    return modelRunner({ ...config, graph: this });
  }

  /** A `router` step whose route names are endpoints of this graph (unique with every other). */
  router(config: RouterConfig): OperatorFunction<ServingEvent, ServingEvent> {
    const name = config.name ?? 'router';
    const routes = Object.keys((config as { routes?: object }).routes ?? {});
    this.claim(
      routes.map((route) => ({ endpointName: route, where: `route '${route}' of router '${name}'` })),
      'router.routes',
    );
    return router(config);
  }

  /** The endpoint names in use and where. */
  endpointNames(): { endpointName: string; where: string }[] {
    return [...this.endpoints.values()].map((u) => ({ ...u }));
  }

  /** A model endpoint of one of the graph's steps (a router's route is not one): `undefined` when none. */
  endpoint(name: string): GraphEndpoint | undefined {
    for (const step of this.steps) {
      const m = step.models.find((entry) => entry.endpointName === name);
      if (m !== undefined) {
        return { endpointName: m.endpointName, step: step.step, executionMechanism: m.executionMechanism, ...(m.inputs ? { inputs: [...m.inputs] } : {}), ...(m.outputs ? { outputs: [...m.outputs] } : {}) };
      }
    }
    return undefined;
  }

  /**
   * @internal Registers a step's models (their names must be unique in the graph) and returns
   * its hold on the graph-owned session.
   */
  bindStep(step: string, models: readonly ModelEntry[], pool: PoolOptions | undefined, executor: Executor | undefined): StepBinding {
    if (this.closed) throw new ConfigError(`graph '${this.name}' is closed; create a new graph`);
    const stepName = this.steps.some((s) => s.step === step) ? `${step}#${++this.stepCount}` : step;
    this.claim(
      models.map((m) => ({
        endpointName: m.endpointName,
        where: m.executionMechanism === 'shared_executor' ? `proxy '${m.endpointName}' in step '${stepName}'` : `step '${stepName}'`,
      })),
      `${step}.models`,
    );
    for (const m of models) {
      if (m.executionMechanism === 'shared_executor' && (m.sharedModelName === undefined || !this.shared.has(m.sharedModelName))) {
        throw new ConfigError([
          {
            path: `${step}.models['${m.endpointName}'].sharedModelName`,
            expected: `a shared model of graph '${this.name}' (shared: ${this.describeShared()})`,
            actual: m.sharedModelName === undefined ? 'none' : `'${m.sharedModelName}'`,
          },
        ]);
      }
    }
    const record = new StepRecord(this, step, models, executor ?? createDefaultExecutor({ ...this.pool, ...pool }, this.sharedExecutor));
    this.steps.push(record);
    return record;
  }

  private claim(uses: EndpointUse[], path: string): void {
    const seen = new Map<string, EndpointUse>();
    for (const use of uses) {
      const existing = this.endpoints.get(use.endpointName) ?? seen.get(use.endpointName);
      if (existing !== undefined) {
        throw new ConfigError([
          {
            path,
            expected: `endpoint names unique across graph '${this.name}'`,
            actual: `'${use.endpointName}' used by ${existing.where} and by ${use.where}`,
          },
        ]);
      }
      seen.set(use.endpointName, use);
    }
    for (const use of uses) this.endpoints.set(use.endpointName, use);
  }

  private describeShared(): string {
    const list = [...this.shared.values()].map(
      (s) => `'${s.entry.endpointName}'${matchUri(s.entry.modelArtifact) ? ` (uri '${matchUri(s.entry.modelArtifact)}')` : ''}`,
    );
    return list.length ? list.join(', ') : 'none';
  }

  /** The executor proxies' calls go through: requests to the shared model's subject. */
  readonly sharedExecutor: Executor = {
    open: (models: readonly ModelEntry[]): ExecutorSession => {
      const servers = new Map(models.map((m) => [m.endpointName, this.shared.get(m.sharedModelName!)!]));
      for (const server of servers.values()) server.open();
      const pending = [...new Set(servers.values())].map((s) => s.ready).filter((r) => r !== undefined);
      return {
        ...(pending.length ? { ready: Promise.all(pending).then(() => undefined) } : {}),
        invoke: (endpointName, input, context) => servers.get(endpointName)!.call(endpointName, input, context),
        // the shared model belongs to the graph: a step ending does not close it
        close: () => undefined,
      };
    },
  };

  /**
   * Loads every model of the graph: shared models once, then each step's, one at a time (no memory
   * peak) unless `parallel`. Rejects with `ModelLoadError` when one cannot load.
   */
  ready(options: { parallel?: boolean } = {}): Promise<void> {
    this.readyPromise ??= (async () => {
      if (this.monitor.tracked) {
        await this.endpointRegistry.load();
        this.endpointRegistry.apply(
          this.steps.flatMap((step) =>
            step.models.map((m) => ({
              endpointName: m.endpointName,
              modelClass: modelClassName(m.modelClass),
              labels: m.labels ?? {},
              executionMechanism: m.executionMechanism,
              step: step.step,
              creationStrategy: m.creationStrategy ?? 'inplace',
            })),
          ),
        );
      }
      const openers: (() => PromiseLike<void> | undefined)[] = [
        ...[...this.shared.values()].map((s) => () => s.open()),
        ...this.steps.map((step) => () => step.open().ready),
      ];
      if (options.parallel) {
        await Promise.all(openers.map((open) => open()));
      } else {
        for (const open of openers) await open();
      }
    })().catch((error: unknown) => {
      this.readyPromise = undefined;
      throw error instanceof ModelLoadError ? error : new ModelLoadError(this.name, toError(error).message, { cause: error });
    });
    return this.readyPromise;
  }

  /**
   * Closes the graph: calls still running in its steps fail (their events leave errored), models
   * are closed, pools and processes end, and `monitoring$` completes.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const reason = new RxServeError(`graph '${this.name}' was closed`);
    for (const step of this.steps) for (const s of step.subscribers) s.abort(reason);
    await Promise.all([
      ...this.steps.map(async (step) => {
        try {
          await step.session?.close();
        } catch {
          /* closing is best effort: nothing more to release */
        }
      }),
      ...[...this.shared.values()].map((s) => s.close()),
    ]);
    if (this.monitor.tracked) await this.endpointRegistry.save();
    this.records.complete();
  }
}

/** A request to a shared model, and its answer, as they travel on the multicast subjects. */
type SharedRequest =
  | { readonly kind: 'call'; readonly id: number; readonly origin: string; readonly input: unknown; readonly eventId: string; readonly path?: string }
  | { readonly kind: 'cancel'; readonly id: number };
type SharedResponse = { readonly id: number } & ({ readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: Error });

/**
 * Serves one shared model: requests from every proxy arrive on one multicast subject, answers are
 * multicast back and matched by call id; one lane (`maxInFlight`) for all proxies together.
 */
class SharedModelServer {
  readonly proxies = new Map<string, ModelArtifact | LLMPromptArtifact | undefined>();
  readonly requests = new Subject<SharedRequest>();
  readonly responses = new Subject<SharedResponse>();
  ready: PromiseLike<void> | undefined;
  private session: ExecutorSession | undefined;
  private opened = false;
  private nextId = 0;
  private active = 0;
  private readonly queue: Extract<SharedRequest, { kind: 'call' }>[] = [];
  private readonly running = new Map<number, { context: CallContext; cancel?: () => void }>();

  constructor(
    private readonly graph: Graph,
    readonly entry: ModelEntry,
    private readonly limit: number,
  ) {
    this.requests.subscribe((request) => (request.kind === 'call' ? this.enqueue(request) : this.cancel(request.id)));
  }

  /** Opens the model's session once (one instance: worker mechanisms get one thread/process). */
  open(): PromiseLike<void> | undefined {
    if (this.opened) return this.ready;
    this.opened = true;
    const hooks: ExecutorHooks = {
      step: `shared model '${this.entry.endpointName}'`,
      fail: (error) => this.failAll(error),
    };
    // The model learns its proxies' artifacts (an LLModel picks the caller's prompt by ctx.origin).
    const params = {
      ...this.entry.params,
      proxyArtifacts: Object.fromEntries([...this.proxies].map(([name, artifact]) => [name, artifact ?? null])),
    };
    const single = { maxThreads: 1, maxProcesses: 1, poolFactor: 1 };
    this.session = createDefaultExecutor(single).open([{ ...this.entry, params }], hooks);
    this.ready = this.session.ready;
    return this.ready;
  }

  /** A proxy's call: send the request, wait for the answer with its id. */
  call(origin: string, input: unknown, context: PredictContext): Observable<unknown> {
    return new Observable<unknown>((subscriber) => {
      if (this.requests.closed || this.requests.isStopped) {
        subscriber.error(new RxServeError(`shared model '${this.entry.endpointName}' is closed (graph '${this.graph.name}' was closed)`));
        return;
      }
      const id = ++this.nextId;
      let answered = false;
      const answer = this.responses
        .pipe(
          filter((r) => r.id === id),
          take(1),
        )
        .subscribe((response) => {
          answered = true;
          if (response.ok) {
            subscriber.next(response.value);
            subscriber.complete();
          } else subscriber.error(response.error);
        });
      this.requests.next({ kind: 'call', id, origin, input, eventId: context.eventId, ...(context.path !== undefined ? { path: context.path } : {}) });
      return () => {
        answer.unsubscribe();
        if (!answered) this.requests.next({ kind: 'cancel', id });
      };
    });
  }

  private enqueue(request: Extract<SharedRequest, { kind: 'call' }>): void {
    if (this.graph.closed || this.session === undefined) {
      this.respond(request.id, undefined, new RxServeError(`shared model '${this.entry.endpointName}' is not open (graph '${this.graph.name}' ${this.graph.closed ? 'was closed' : 'is not ready'})`));
      return;
    }
    this.queue.push(request);
    this.pump();
  }

  private pump(): void {
    while (this.active < this.limit && this.queue.length > 0) this.run(this.queue.shift()!);
  }

  private run(request: Extract<SharedRequest, { kind: 'call' }>): void {
    this.active++;
    const context = new CallContext(request.eventId, request.origin, request.path);
    const slot: { context: CallContext; cancel?: () => void } = { context };
    this.running.set(request.id, slot);
    let settled = false;
    const finish = (value: unknown, error?: unknown) => {
      if (settled || !this.running.has(request.id)) return;
      settled = true;
      this.running.delete(request.id);
      this.active--;
      this.respond(request.id, value, error);
      this.pump();
    };
    const ready = this.session!.ready;
    const start = () => {
      slot.cancel = settle(
        () => this.session!.invoke(this.entry.endpointName, request.input, context),
        (value) => finish(value),
        (error) => finish(undefined, error ?? new Error('failed')),
      );
    };
    if (ready) ready.then(start, (error: unknown) => finish(undefined, error));
    else start();
  }

  private cancel(id: number): void {
    const index = this.queue.findIndex((r) => r.id === id);
    if (index >= 0) {
      this.queue.splice(index, 1);
      return;
    }
    const slot = this.running.get(id);
    if (slot === undefined) return;
    this.running.delete(id);
    this.active--;
    slot.context.abort(new DOMException('the proxy call was cancelled', 'AbortError'));
    slot.cancel?.();
    this.pump();
  }

  private respond(id: number, value: unknown, error?: unknown): void {
    this.responses.next(error === undefined ? { id, ok: true, value } : { id, ok: false, error: toError(error) });
  }

  private failAll(error: Error): void {
    for (const request of this.queue.splice(0)) this.respond(request.id, undefined, error);
    for (const [id, slot] of [...this.running]) {
      this.running.delete(id);
      slot.cancel?.();
      this.respond(id, undefined, error);
    }
    this.active = 0;
  }

  async close(): Promise<void> {
    this.failAll(new RxServeError(`graph '${this.graph.name}' was closed`));
    try {
      await this.session?.close();
    } finally {
      this.requests.complete();
      this.responses.complete();
    }
  }
}

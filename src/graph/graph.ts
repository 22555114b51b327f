// createGraph(): what the steps of one serving graph share: endpoint names (unique across the
// graph), worker pool settings, monitoring, shared models, and the models' lifecycle.
// Longer than 300 lines because it is the Graph's whole public surface, one documented method per
// operation; the parts with a job of their own live beside it (sharedModel, stepRecord, codecs).
import type { OperatorFunction } from 'rxjs';
import { type Observable, Subject } from 'rxjs';
import { decodeOrThrow } from '../decode.js';
import { ConfigError, ModelLoadError, RxServeError, toError } from '../errors.js';
import type { ServingEvent } from '../event.js';
import { createDefaultExecutor } from '../execution/defaultExecutor.js';
import type { Executor } from '../execution/executor.js';
import { PoolOptionsCodec, type PoolOptions } from '../execution/poolOptions.js';
import { BIND_STEP, type GraphRef, type SessionProvider, type StepBinding, type StepRequest } from '../execution/provider.js';
import { decodeModelEntries, type ModelEntry } from '../model/entry.js';
import { modelClassName } from '../model/registry.js';
import {
  GraphMonitor,
  MONITORING,
  type LaneStats,
  type GraphShape,
  type FlowStepStats,
  type MonitoringSource,
  type StepStats,
} from '../monitoring/monitor.js';
import type { EndpointRecord } from '../monitoring/record.js';
import { EndpointRegistry } from '../monitoring/endpointRegistry.js';
import { modelRunner, type ModelRunnerConfig } from '../operators/modelRunner.js';
import { router, type RouterConfig } from '../operators/router.js';
import { modelRouter, type ModelRouterConfig } from '../operators/modelRouter.js';
import { parallelRun, type ParallelRunConfig } from '../operators/parallelRun.js';
import { votingEnsemble, type VotingEnsembleConfig } from '../operators/votingEnsemble.js';
import { flow as flowOf, type Flow, type FlowOptions } from '../flow/flow.js';
import { ATTACH_FLOW, DEFAULT_CLOSE_TIMEOUT_MS, whenAllIdle, type FlowHost, type FlowRuntime } from '../flow/runtime.js';
import {
  GraphOptionsCodec,
  ProxyCodec,
  SharedModelCodec,
  type GraphOptions,
  type SharedModelConfig,
  type SharedModelProxyConfig,
} from './graphOptions.js';
import { SharedModel, describeShared, findSharedModel, sharedModelExecutor } from './sharedModel.js';
import { StepRecord } from './stepRecord.js';

export type { GraphOptions, SharedModelConfig, SharedModelProxyConfig } from './graphOptions.js';

/** Where an endpoint name is used, for uniqueness errors. */
interface EndpointUse {
  readonly endpointName: string;
  readonly where: string;
}

/** What `graph.endpoint(name)` tells about one endpoint (a model of a step, or a proxy). */
export interface EndpointInfo {
  readonly endpointName: string;
  /** The step it belongs to. */
  readonly step: string;
  readonly executionMechanism?: ModelEntry['executionMechanism'];
  readonly modelClass?: string;
  readonly inputs?: readonly string[];
  readonly outputs?: readonly string[];
  readonly labels?: ModelEntry['labels'];
  /** Where its output is written in the body (a model of a step). */
  readonly resultPath?: string;
  /** Its step has other models: the step's output body holds its output under its name (MLRun's merge). */
  readonly merged?: boolean;
}

/**
 * Creates a serving graph: the object that holds what its steps share.
 *
 * Steps made with `graph.modelRunner()` (or `modelRunner({ graph })`) have their models owned by
 * the graph: loaded by `ready()` (one at a time) or on first use, shared by every subscription,
 * closed by `close()`. Shared models are loaded once and reached from any step through proxies,
 * each its own endpoint. Endpoints are models and proxies only, their names unique across the
 * graph; step and route names are not endpoint names (a route `mlp` serving a model `mlp` is the
 * KServe layout).
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
  return new Graph(decoded.name ?? 'graph', decoded.monitoring, decoded.closeTimeoutMs);
}

/** A serving graph (see `createGraph`). Made only by `createGraph()`, which validates its options. */
// A SessionProvider, a Monitored and a FlowHost by shape, without an `implements` clause: that
// clause would carry those internal interfaces into the published typings (the members they
// name are internal and stripped). Every place that hands a graph on as one of them checks it.
export class Graph {
  /** One record per model call (filled by monitoring); completes on `close()`. */
  readonly monitoring$: Observable<EndpointRecord>;
  /** One entry per model endpoint (tracked graphs: loaded, strategies applied and saved). */
  readonly endpointRegistry: EndpointRegistry;
  readonly #records = new Subject<EndpointRecord>();
  readonly #monitor: GraphMonitor;
  #closed = false;
  #pool: PoolOptions = {};
  readonly #endpoints = new Map<string, EndpointUse>();
  readonly #entries = new Map<string, EndpointInfo>();
  readonly #shared = new Map<string, SharedModel>();
  readonly #steps: StepRecord[] = [];
  /**
   * Routers made through the graph (`router`, and `kind` for modelRouter, parallelRun and
   * votingEnsemble), for the graph's shape; their route names are not endpoints (§7).
   */
  readonly #routers: { readonly step: string; readonly routes: readonly string[]; readonly kind?: string }[] = [];
  readonly #flows: FlowRuntime[] = [];
  readonly #closeTimeoutMs: number;
  #stepCount = 0;
  #readyPromise: Promise<void> | undefined;
  readonly #sharedExecutor: Executor = sharedModelExecutor((name) => this.#shared.get(name)!);

  /** @internal Use `createGraph()`. */
  constructor(
    readonly name: string,
    monitoringOptions?: { samplingPercentage?: number; registryPath?: string },
    closeTimeoutMs: number = DEFAULT_CLOSE_TIMEOUT_MS,
  ) {
    this.#closeTimeoutMs = closeTimeoutMs;
    this.monitoring$ = this.#records.asObservable();
    this.#monitor = new GraphMonitor(monitoringOptions !== undefined, monitoringOptions?.samplingPercentage ?? 100, this.#records);
    this.endpointRegistry = new EndpointRegistry(monitoringOptions?.registryPath);
    if (monitoringOptions !== undefined) this.#monitor.observers.add(this.endpointRegistry);
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** @internal What exporters read (Prometheus, tracing). */
  get [MONITORING](): MonitoringSource {
    const monitor = this.#monitor;
    return {
      graphName: this.name,
      observe: (observer) => void monitor.observers.add(observer),
      unobserve: (observer) => void monitor.observers.delete(observer),
      laneStats: () => this.laneStats(),
      stepStats: () => this.stepStats(),
      describe: () => this.describe(),
      flowStats: () => this.flowStats(),
    };
  }

  /**
   * The graph's shape: its steps and their models (mechanism, shared-model proxies), its shared
   * models, its routers and routes, and its flows' steps and edges (what the dashboard draws).
   */
  describe(): GraphShape {
    return {
      graph: this.name,
      steps: this.#steps.map((step) => ({
        step: step.step,
        models: step.models.map((m) => ({
          endpointName: m.endpointName,
          modelClass: modelClassName(m.modelClass),
          executionMechanism: m.executionMechanism,
          ...(m.sharedModelName !== undefined ? { sharedModelName: m.sharedModelName } : {}),
        })),
      })),
      sharedModels: [...this.#shared.values()].map(({ entry }) => ({
        name: entry.endpointName,
        modelClass: modelClassName(entry.modelClass),
        executionMechanism: entry.executionMechanism,
      })),
      routers: this.#routers.map((r) => ({ ...r, routes: [...r.routes] })),
      ...(this.#flows.length > 0 ? { flows: this.#flows.map((f) => f.describe()) } : {}),
    };
  }

  /** Per step of each flow built on the graph: copies of events in it now, and its errors so far. */
  flowStats(): FlowStepStats[] {
    return this.#flows.flatMap((f) => f.stats());
  }

  /** In-flight and waiting calls per model lane of every running graph step (read at scrape time). */
  laneStats(): LaneStats[] {
    return this.#steps.flatMap((step) => [...step.subscribers].flatMap((s) => s.lanes()));
  }

  /** Per graph step: events in flight and queued now, and events rejected with `QueueFullError` so far. */
  stepStats(): StepStats[] {
    return this.#steps.map((step) => step.stats());
  }

  /** Worker pool limits for the graph's steps (a step's own `pool` wins) and its shared models. */
  configurePoolResource(options: Pick<PoolOptions, 'maxThreads' | 'maxProcesses' | 'poolFactor'>): void {
    const decoded = decodeOrThrow(PoolOptionsCodec, options, 'graph.configurePoolResource');
    this.#pool = { ...this.#pool, ...decoded };
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
    if (this.#shared.has(decoded.name) && !decoded.override) {
      throw new ConfigError([
        {
          path: 'addSharedModel.name',
          expected: 'a name not used by another shared model (or override: true)',
          actual: `'${decoded.name}'`,
        },
      ]);
    }
    // The shared model's own fields are an entry's (checked again by the entry's codecs).
    const { name, override: _override, maxInFlight: _maxInFlight, ...fields } = decoded;
    const [entry] = decodeModelEntries([{ ...fields, endpointName: name, modelClass: config.modelClass }], 'addSharedModel');
    void this.#shared.get(decoded.name)?.close();
    this.#shared.set(decoded.name, new SharedModel(entry, decoded.maxInFlight ?? Infinity, this.name));
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
    const server = findSharedModel(this.#shared, artifact, decoded.sharedModelName);
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

  /**
   * A `modelRunner` step whose models this graph owns, like `modelRunner({ ...config, graph })`
   * except that the step joins the graph now: its endpoint names are checked at once and
   * `ready()` loads its models.
   */
  modelRunner(config: Omit<ModelRunnerConfig, 'graph'>): OperatorFunction<ServingEvent, ServingEvent> {
    let binding: StepBinding | undefined;
    // A provider that joins once (the join below): modelRunner checks its `graph` for a provider at
    // run time, not for a graph's public shape (GraphRef), which this object does not have.
    const provider: SessionProvider = { [BIND_STEP]: (request) => (binding ??= this[BIND_STEP](request)) };
    const operator = modelRunner({ ...config, graph: provider as unknown as GraphRef });
    // modelRunner() validated the config; join now with the same request it will make.
    const step = config.name ?? 'model_runner';
    binding = this[BIND_STEP]({
      step,
      models: decodeModelEntries(config.models, 'modelRunner.models'),
      pool: config.pool,
      executor: config.executor,
    });
    return operator;
  }

  /**
   * A flow (docs/design.md §17, MLRun's `set_topology('flow')`) on this graph, like `flow({ ...options,
   * graph })`: once built, `describe()` and the dashboard show it and `close()` waits for its
   * background branches. Its name defaults to `'flow'` (`'flow#2'`, ... when taken).
   */
  flow(options: Omit<FlowOptions, 'graph'> = {}): Flow {
    let name = options.name;
    if (name === undefined) {
      name = 'flow';
      for (let n = 2; this.#flows.some((f) => f.name === name); n++) name = `flow#${n}`;
    }
    return flowOf({ ...options, name, graph: this satisfies FlowHost });
  }

  /** @internal A flow built on this graph (flow names are unique in it). */
  [ATTACH_FLOW](flow: FlowRuntime): void {
    if (this.#closed) throw new ConfigError(`graph '${this.name}' is closed; create a new graph`);
    if (this.#flows.some((f) => f.name === flow.name)) {
      throw new ConfigError([{ path: 'flow.name', expected: '', message: `graph '${this.name}' already has a flow named '${flow.name}'` }]);
    }
    this.#flows.push(flow);
  }

  /**
   * @internal Resolves once no event has copies inside the graph's flows (their background
   * branches are done), or after `timeoutMs` (default: the graph's `closeTimeoutMs`).
   */
  flowsIdle(timeoutMs: number = this.#closeTimeoutMs): Promise<boolean> {
    return whenAllIdle(this.#flows, timeoutMs);
  }

  /**
   * A `router` step drawn in the graph's shape. Its route names are not endpoint names: a route
   * may bear the name of the model it serves (`/v2/models/mlp` → route `mlp` → model `mlp`, the
   * KServe layout), and the endpoints are the models of the routes' steps.
   */
  router(config: RouterConfig): OperatorFunction<ServingEvent, ServingEvent> {
    const operator = router(config); // validates the config first
    this.#routers.push({ step: config.name ?? 'router', routes: Object.keys(config.routes) });
    return operator;
  }

  /**
   * A `modelRouter` step shown with its routes in `describe()` (the dashboard). Its route names are
   * not endpoint names (a route `mlp` whose step serves model `mlp` is the KServe layout); the
   * models of its routes' steps are, as ever.
   */
  modelRouter(config: ModelRouterConfig): OperatorFunction<ServingEvent, ServingEvent> {
    return this.#routerStep(modelRouter(config), 'modelRouter', config.name ?? 'model_router', config.routes);
  }

  /** A `parallelRun` step shown with its routes in `describe()` (see `graph.modelRouter`). */
  parallelRun(config: ParallelRunConfig): OperatorFunction<ServingEvent, ServingEvent> {
    return this.#routerStep(parallelRun(config), 'parallelRun', config.name ?? 'parallel_run', config.routes);
  }

  /** A `votingEnsemble` step shown with its routes in `describe()` (see `graph.modelRouter`). */
  votingEnsemble(config: VotingEnsembleConfig): OperatorFunction<ServingEvent, ServingEvent> {
    return this.#routerStep(votingEnsemble(config), 'votingEnsemble', config.name ?? 'voting_ensemble', config.routes);
  }

  // The operator validated the config first: only a valid step is recorded.
  #routerStep<F>(operator: F, kind: string, step: string, routes: object): F {
    this.#routers.push({ step, kind, routes: Object.keys(routes) });
    return operator;
  }

  /** The endpoint names in use (models of the graph's steps and proxies) and where. */
  endpointNames(): { endpointName: string; where: string }[] {
    return [...this.#endpoints.values()].map((u) => ({ ...u }));
  }

  /** What the graph knows of one endpoint (a model of a step, or a proxy); `undefined` for any other name. */
  endpoint(name: string): EndpointInfo | undefined {
    return this.#entries.get(name);
  }

  /** @internal Registers a step's models (names unique in the graph); its hold on a graph-owned session. */
  [BIND_STEP](request: StepRequest): StepBinding {
    const { step, models, pool, executor } = request;
    if (this.#closed) throw new ConfigError(`graph '${this.name}' is closed; create a new graph`);
    const stepName = this.#steps.some((s) => s.step === step) ? `${step}#${++this.#stepCount}` : step;
    for (const m of models) {
      if (m.executionMechanism === 'shared_executor' && (m.sharedModelName === undefined || !this.#shared.has(m.sharedModelName))) {
        throw new ConfigError([
          {
            path: `${step}.models['${m.endpointName}'].sharedModelName`,
            expected: `a shared model of graph '${this.name}' (shared: ${describeShared(this.#shared)})`,
            actual: m.sharedModelName === undefined ? 'none' : `'${m.sharedModelName}'`,
          },
        ]);
      }
    }
    this.#claim(
      models.map((m) => ({
        endpointName: m.endpointName,
        where: m.executionMechanism === 'shared_executor' ? `proxy '${m.endpointName}' in step '${stepName}'` : `step '${stepName}'`,
      })),
      `${step}.models`,
    );
    for (const m of models) {
      this.#entries.set(m.endpointName, {
        endpointName: m.endpointName,
        step: stepName,
        executionMechanism: m.executionMechanism,
        modelClass: modelClassName(m.modelClass),
        ...(m.inputs ? { inputs: m.inputs } : {}),
        ...(m.outputs ? { outputs: m.outputs } : {}),
        ...(m.labels ? { labels: m.labels } : {}),
        ...(m.resultPath !== undefined ? { resultPath: m.resultPath } : {}),
        merged: models.length > 1,
      });
    }
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the getter below has the literal as its `this` and reads the graph's #closed
    const graph = this;
    const record = new StepRecord(step, models, executor ?? createDefaultExecutor({ ...this.#pool, ...pool }, this.#sharedExecutor), {
      name: this.name,
      get closed() {
        return graph.#closed;
      },
      monitor: this.#monitor,
    });
    this.#steps.push(record);
    return record;
  }

  #claim(uses: EndpointUse[], path: string): void {
    const seen = new Map<string, EndpointUse>();
    for (const use of uses) {
      const existing = this.#endpoints.get(use.endpointName) ?? seen.get(use.endpointName);
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
    for (const use of uses) this.#endpoints.set(use.endpointName, use);
  }

  /**
   * Loads every model of the graph: shared models once, then each step's, one at a time (no memory
   * peak) unless `parallel`. Rejects with `ModelLoadError` when one cannot load.
   */
  ready(options: { parallel?: boolean } = {}): Promise<void> {
    this.#readyPromise ??= (async () => {
      if (this.#monitor.tracked) {
        await this.endpointRegistry.load();
        this.endpointRegistry.apply(
          this.#steps.flatMap((step) =>
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
        ...[...this.#shared.values()].map((s) => () => s.open()),
        ...this.#steps.map((step) => () => step.open().ready),
      ];
      if (options.parallel) {
        await Promise.all(openers.map((open) => open()));
      } else {
        for (const open of openers) await open();
      }
    })().catch((error: unknown) => {
      this.#readyPromise = undefined;
      throw error instanceof ModelLoadError ? error : new ModelLoadError(this.name, toError(error).message, { cause: error });
    });
    return this.#readyPromise;
  }

  /**
   * Closes the graph: first waits (up to `closeTimeoutMs`) for the background branches of its
   * flows, then calls still running in its steps fail (their events leave errored), models are
   * closed, pools and processes end, and `monitoring$` completes.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#flows.length > 0) await this.flowsIdle();
    const reason = new RxServeError(`graph '${this.name}' was closed`);
    for (const step of this.#steps) for (const s of step.subscribers) s.abort(reason);
    await Promise.all([
      ...this.#steps.map(async (step) => {
        try {
          await step.session?.close();
        } catch {
          /* closing is best effort: nothing more to release */
        }
      }),
      ...[...this.#shared.values()].map((s) => s.close()),
    ]);
    if (this.#monitor.tracked) await this.endpointRegistry.save();
    this.#records.complete();
  }
}

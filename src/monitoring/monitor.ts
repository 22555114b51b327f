// The graph's monitor: turns finished events into EndpointRecords (sampled before they are built)
// and feeds opt-in observers (registry counters, Prometheus, tracing) with every call.
import { isoTime } from './isoTime.js';
import type { Subject } from 'rxjs';
import { describeError } from '../errors.js';
import { getPath, type ServingEvent } from '../event.js';
import type { ModelEntry } from '../model/entry.js';
import type { Model } from '../model/model.js';
import { isModelInstance, modelClassName, registeredModel } from '../model/registry.js';
import { callUsage } from '../model/usage.js';
import type { EndpointRecord } from './record.js';

/** One model call of a finished event, as the runner keeps it. */
export interface CallReport {
  readonly entry: ModelEntry;
  readonly value: unknown;
  readonly error: Error | undefined;
  /** Start (epoch ms, the step's clock). */
  readonly started: number;
  readonly latencyMs: number;
}

/** One finished event of a step, as the runner hands it over: references only, nothing built. */
export interface EventReport {
  readonly step: string;
  readonly event: ServingEvent;
  /** The selected models' calls, in selection order. */
  readonly calls: readonly CallReport[];
}

/** Something that wants every call (not only sampled records). */
export interface MonitorObserver {
  onEvent(report: EventReport): void;
}

/** Per-lane occupancy of one running step, read at scrape time. */
export interface LaneStats {
  readonly endpointName: string;
  readonly step: string;
  readonly inFlight: number;
  readonly queued: number;
}

/** A step's intake figures (read at scrape time). */
export interface StepStats {
  readonly step: string;
  /** Events being worked on or waiting to be emitted in order. */
  readonly inFlight: number;
  /** Events admitted, waiting for a slot. */
  readonly queued: number;
  /** Events rejected with `QueueFullError` so far. */
  readonly rejected: number;
}

/** The graph's shape, for a diagram: steps and their models, shared models and their proxies. */
export interface GraphShape {
  readonly graph: string;
  readonly steps: readonly {
    readonly step: string;
    readonly models: readonly {
      readonly endpointName: string;
      readonly modelClass: string;
      readonly executionMechanism: string;
      /** For a proxy (`shared_executor`): the shared model it reaches. */
      readonly sharedModelName?: string;
    }[];
  }[];
  readonly sharedModels: readonly { readonly name: string; readonly modelClass: string; readonly executionMechanism: string }[];
  /**
   * Router steps and their routes (endpoint names for `router`); `kind` names the router-family
   * operator (`'modelRouter'`, `'parallelRun'`, `'votingEnsemble'`; absent: `router`).
   */
  readonly routers: readonly { readonly step: string; readonly routes: readonly string[]; readonly kind?: string }[];
  /** The graph's flows (§17): their steps and edges. */
  readonly flows?: readonly FlowShape[];
}

/** One flow's DAG, as `graph.describe()` lists it and the dashboard draws it (docs/design.md §17). */
export interface FlowShape {
  readonly flow: string;
  readonly steps: readonly {
    readonly step: string;
    /** A step's operator, a choice, or an error handler. */
    readonly kind: 'step' | 'choice' | 'errorHandler';
    /** Every input event enters here. */
    readonly entry?: true;
    /** The step whose output is the response. */
    readonly responder?: true;
    readonly maxIterations?: number;
  }[];
  /**
   * `next`: the step's output goes on (fan-out); `cycle`: a `cycleTo` edge back upstream; `error`:
   * the step's errored events go to its handler; `before`: a handler's output goes on.
   */
  readonly edges: readonly { readonly from: string; readonly to: string; readonly kind: 'next' | 'cycle' | 'error' | 'before' }[];
}

/** A flow step's figures (read at scrape time). */
export interface FlowStepStats {
  readonly flow: string;
  readonly step: string;
  /** Copies of events inside the step now, over every subscription of the flow. */
  readonly inFlight: number;
  /** Events the step failed so far (its own errors: not ones that passed through it errored). */
  readonly errors: number;
}

/** The key under which a graph hands exporters its monitoring; a symbol, so no public member. */
export const MONITORING: unique symbol = Symbol.for('rxserve.monitoring');

/** What exporters (Prometheus, tracing, the dashboard) read from a graph. */
export interface MonitoringSource {
  readonly graphName: string;
  observe(observer: MonitorObserver): void;
  unobserve(observer: MonitorObserver): void;
  /** In-flight and waiting calls per model lane of every running step. */
  laneStats(): LaneStats[];
  /** Intake figures per running step. */
  stepStats(): StepStats[];
  /** The graph's steps, models (with mechanism), shared models and proxies. */
  describe(): GraphShape;
  /** Per step of each of the graph's flows: copies in flight and errors so far. */
  flowStats?(): FlowStepStats[];
}

/** Something exporters can watch: a graph made by `createGraph()`. */
export interface Monitored {
  readonly [MONITORING]: MonitoringSource;
}

/** True for a graph (checked by shape, so monitoring never imports the graph). */
export function isMonitored(value: unknown): value is Monitored {
  return typeof (value as Monitored | null)?.[MONITORING]?.observe === 'function';
}

export class GraphMonitor {
  readonly observers = new Set<MonitorObserver>();
  private readonly keep: number;
  /** The output names each entry's records use (its class's `monitoredOutputs` when it has them). */
  private readonly outputNames = new WeakMap<ModelEntry, readonly string[] | undefined>();
  /** Endpoints already warned about their `outputs` being replaced. */
  private readonly warned = new Set<string>();

  constructor(
    /** Whether records are produced at all (a graph created with `monitoring`). */
    readonly tracked: boolean,
    readonly samplingPercentage: number,
    private readonly records: Subject<EndpointRecord>,
    private readonly random: () => number = Math.random,
  ) {
    this.keep = samplingPercentage / 100;
  }

  /** True when anything listens: the runner skips the report otherwise. */
  get active(): boolean {
    return this.tracked || this.observers.size > 0;
  }

  onEvent(report: EventReport): void {
    for (const observer of this.observers) observer.onEvent(report);
    if (!this.tracked) return;
    for (const call of report.calls) {
      // Sampled before anything is built; error records are never sampled out.
      if (call.error === undefined && this.keep < 1 && this.random() >= this.keep) continue;
      this.records.next(this.build(report, call));
    }
  }

  private outputsOf(entry: ModelEntry): readonly string[] | undefined {
    if (this.outputNames.has(entry)) return this.outputNames.get(entry);
    let names = entry.outputs;
    const cls = classOf(entry);
    const forced = cls?.monitoredOutputs;
    if (cls !== undefined && Array.isArray(forced)) {
      const given = entry.outputs ?? [];
      if (given.length > 0 && given.join('\u0000') !== forced.join('\u0000') && !this.warned.has(entry.endpointName)) {
        this.warned.add(entry.endpointName);
        const name = cls.name || '(anonymous class)';
        process.emitWarning(
          `${name} endpoint '${entry.endpointName}': monitoring outputs ${JSON.stringify(given)} replaced by ${JSON.stringify(forced)} (${withArticle(name)} returns { ${forced.join(', ')} }, as in MLRun)`,
          { code: 'RXSERVE_LLM_OUTPUTS' },
        );
      }
      names = forced;
    }
    this.outputNames.set(entry, names);
    return names;
  }

  private build(report: EventReport, call: CallReport): EndpointRecord {
    const { entry, error, value } = call;
    const usage = callUsage(value, error);
    return {
      endpointName: entry.endpointName,
      modelClass: modelClassName(entry.modelClass),
      step: report.step,
      labels: entry.labels ?? {},
      eventId: report.event.id,
      when: isoTime(call.started),
      latencyMs: call.latencyMs,
      request: { inputs: normalize(getPath(report.event.body, entry.inputPath), entry.inputs) },
      ...(error ? { error: describeError(error) } : { response: { outputs: normalize(value, this.outputsOf(entry)) } }),
      ...(usage ? { usage } : {}),
      samplingPercentage: this.samplingPercentage,
      effectiveSampleCount: error ? 1 : 100 / this.samplingPercentage,
    };
  }
}

/**
 * `a Scorer`, `an Embedder`, `an LLModel`: 'an' before a vowel, or before an initialism whose
 * first letter is said with one (L, M, N, R, S, X, F, H: "an LLM", "an MLP").
 */
function withArticle(name: string): string {
  return `${/^[AEIOU]/i.test(name) || /^[FHLMNRSX][A-Z]/.test(name) ? 'an' : 'a'} ${name}`;
}

/**
 * The class of an entry's model when the main side has it (a class, a registered name, an
 * instance), for its statics; undefined for a module reference (loaded in workers only).
 */
function classOf(entry: ModelEntry): typeof Model | undefined {
  const ref = entry.modelClass;
  const cls = typeof ref === 'string' ? registeredModel(ref) : isModelInstance(ref) ? ref.constructor : ref;
  return typeof cls === 'function' ? (cls as unknown as typeof Model) : undefined;
}

/**
 * MLRun's normalization of monitored inputs and outputs into rows: a scalar becomes `[v]`, an
 * array stays, an object becomes its values in `names` order (or key order) — transposed into
 * rows when every value is an array (`{ a: [1, 2], b: [3, 4] }` → `[[1, 3], [2, 4]]`).
 */
export function normalize(value: unknown, names?: readonly string[]): unknown[] {
  if (Array.isArray(value)) return value;
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return [value];
  const record = value as Record<string, unknown>;
  const columns = (names && names.length ? names : Object.keys(record)).map((k) => record[k]);
  if (columns.length > 0 && columns.every(Array.isArray)) {
    const rows = Math.max(...columns.map((c) => (c as unknown[]).length));
    return Array.from({ length: rows }, (_, r) => columns.map((c) => (c as unknown[])[r]));
  }
  return [columns];
}

// The graph's option and entry types, and the io-ts codecs that check them.
import * as t from 'io-ts';
import { NonEmptyString, NonNegativeMs, annotate, guard, pickProps, strict } from '../decode.js';
import type { LLMPromptArtifact, ModelArtifact } from '../model/artifact.js';
import { ModelEntryCodec, type CreationStrategy, type ExecutionMechanism, type ModelEntry } from '../model/entry.js';

/**
 * A model loaded once per graph and served to every proxy of it: a model entry's fields (its
 * `inputPath` / `resultPath` are inherited by every proxy) under a `name` instead of an endpoint name.
 */
export interface SharedModelConfig extends Pick<
  ModelEntry,
  'modelClass' | 'modelArtifact' | 'inputs' | 'outputs' | 'inputPath' | 'resultPath' | 'params' | 'batching'
> {
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
  /**
   * How long `close()` waits for the background branches of the graph's flows (docs/design.md §17) before
   * it aborts what still runs; default 30,000 ms.
   */
  readonly closeTimeoutMs?: number;
}

export const Percentage = annotate(
  guard<number>('a percentage above 0 and at most 100', (u) => typeof u === 'number' && u > 0 && u <= 100),
  { type: 'number', exclusiveMinimum: 0, maximum: 100 },
);

export const MonitoringOptionsCodec = strict('MonitoringOptions', {}, { samplingPercentage: Percentage, registryPath: NonEmptyString });

export const GraphOptionsCodec = strict(
  'GraphOptions',
  {},
  { name: NonEmptyString, monitoring: MonitoringOptionsCodec, closeTimeoutMs: NonNegativeMs },
);

// A shared model's and a proxy's fields are a model entry's, checked by the entry's codecs.
const entry = ModelEntryCodec.optional;

export const SharedModelCodec = strict(
  'SharedModelConfig',
  { name: NonEmptyString, modelClass: t.unknown, executionMechanism: t.string },
  {
    ...pickProps(entry, 'modelArtifact', 'inputs', 'outputs', 'inputPath', 'resultPath', 'params', 'maxInFlight', 'batching'),
    override: t.boolean,
  },
);

export const ProxyCodec = strict('SharedModelProxyConfig', pickProps(ModelEntryCodec.required, 'endpointName'), {
  // A proxy's artifact is matched against the shared models': an object, never a file to read.
  modelArtifact: t.UnknownRecord,
  ...pickProps(entry, 'sharedModelName', 'labels', 'creationStrategy'),
});

// The graph's option and entry types, and the io-ts codecs that check them.
import * as t from 'io-ts';
import { DotPath, NonEmptyString, positiveInt, strict } from '../config.js';
import type { LLMPromptArtifact, ModelArtifact } from '../model/artifact.js';
import { CreationStrategyCodec, type CreationStrategy, type ExecutionMechanism, type ModelEntry } from '../model/entry.js';

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

const Percentage = new t.Type<number, number, unknown>(
  'a percentage above 0 and at most 100',
  (u): u is number => typeof u === 'number' && u > 0 && u <= 100,
  (u, c) => (typeof u === 'number' && u > 0 && u <= 100 ? t.success(u) : t.failure(u, c)),
  t.identity,
);

export const GraphOptionsCodec = strict(
  'GraphOptions',
  {},
  { name: NonEmptyString, monitoring: strict('MonitoringOptions', {}, { samplingPercentage: Percentage, registryPath: NonEmptyString }) },
);

export const SharedModelCodec = strict(
  'SharedModelConfig',
  { name: NonEmptyString, modelClass: t.unknown, executionMechanism: t.string },
  {
    modelArtifact: t.union([t.UnknownRecord, t.string], 'an artifact, or the path or file: URL of its JSON file'),
    inputs: t.array(t.string),
    outputs: t.array(t.string),
    inputPath: DotPath,
    resultPath: DotPath,
    params: t.UnknownRecord,
    maxInFlight: positiveInt(true),
    override: t.boolean,
  },
);

export const ProxyCodec = strict(
  'SharedModelProxyConfig',
  { endpointName: NonEmptyString },
  {
    modelArtifact: t.UnknownRecord,
    sharedModelName: NonEmptyString,
    labels: t.union([t.record(t.string, t.string), t.array(t.string)], 'Record<string, string> | string[]'),
    creationStrategy: CreationStrategyCodec,
  },
);


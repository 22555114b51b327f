// ModelEntry: one model of a modelRunner step, its codec, and the checks codecs cannot express.
import * as t from 'io-ts';
import {
  DotPath,
  NonEmptyString,
  NonNegativeMs,
  PositiveMs,
  decodeOrThrow,
  firstNonJson,
  fn,
  guard,
  positiveInt,
  strict,
} from '../decode.js';
import { ConfigError, toError } from '../errors.js';
import { readArtifactFile, type LLMPromptArtifact, type ModelArtifact } from './artifact.js';
import type { Model, ModelClass, ModuleRef } from './model.js';
import { isModelInstance, modelClassName, validateModuleRef } from './registry.js';

/** MLRun's execution mechanisms, names kept verbatim (docs/design.md §5). */
export type ExecutionMechanism = 'naive' | 'asyncio' | 'thread_pool' | 'process_pool' | 'dedicated_process' | 'shared_executor';
// Written out above so the public types do not depend on io-ts; the codec is checked against it.
export const ExecutionMechanismCodec = t.keyof(
  {
    naive: null,
    asyncio: null,
    thread_pool: null,
    process_pool: null,
    dedicated_process: null,
    shared_executor: null,
  },
  "'naive' | 'asyncio' | 'thread_pool' | 'process_pool' | 'dedicated_process' | 'shared_executor'",
) satisfies t.Type<ExecutionMechanism, string, unknown>;

/** Mechanisms that run the model on the main event loop; only these accept a bare class. */
export const IN_PROCESS_MECHANISMS: readonly ExecutionMechanism[] = ['naive', 'asyncio'];

/** What the endpoint registry does with an existing endpoint of the same name. */
export type CreationStrategy = 'inplace' | 'overwrite' | 'archive' | 'skip';
export const CreationStrategyCodec: t.Type<CreationStrategy, string, unknown> = t.keyof(
  { inplace: null, overwrite: null, archive: null, skip: null },
  "'inplace' | 'overwrite' | 'archive' | 'skip'",
);

export const ModuleRefCodec = strict(
  '{ module: string, export?: string }',
  { module: NonEmptyString },
  { export: NonEmptyString },
) satisfies t.Type<ModuleRef, unknown, unknown>;

const ModelInstanceCodec = guard<Model>('a Model instance', isModelInstance);

const ModelClassCodec = t.union(
  [NonEmptyString, fn<ModelClass>('a Model class'), ModuleRefCodec, ModelInstanceCodec],
  'a registered name, a Model class, { module, export? }, or a Model instance',
);

/** A path or `file:` URL of an artifact JSON file; other URI schemes are refused when decoded. */
export const ArtifactRefCodec = t.union([t.UnknownRecord, NonEmptyString], 'an artifact, or the path or file: URL of its JSON file');

/** Dynamic batching of one model's calls (docs/design.md §13). */
export interface Batching {
  /** Calls (not rows) per `predictBatch` call at most; a positive integer. */
  readonly maxBatchSize: number;
  /** How long the first waiting call waits for others, in ms (0: batches form only under load). */
  readonly maxWaitMs: number;
}

export const BatchingCodec = strict(
  '{ maxBatchSize: positive integer, maxWaitMs: non-negative number }',
  { maxBatchSize: positiveInt(), maxWaitMs: NonNegativeMs },
  {},
) satisfies t.Type<Batching, unknown, unknown>;

export const LabelsCodec = t.union([t.record(t.string, t.string), t.array(t.string)], 'Record<string, string> | string[]');

/** The entry's fields: the graph's shared models and proxies and the spec's model codecs take theirs from here. */
export const ModelEntryCodec = strict(
  'ModelEntry',
  {
    endpointName: NonEmptyString,
    modelClass: ModelClassCodec,
    executionMechanism: ExecutionMechanismCodec,
  },
  {
    modelArtifact: ArtifactRefCodec,
    labels: LabelsCodec,
    creationStrategy: CreationStrategyCodec,
    inputs: t.array(t.string),
    outputs: t.array(t.string),
    inputPath: DotPath,
    resultPath: DotPath,
    params: t.UnknownRecord,
    maxInFlight: positiveInt(true),
    timeoutMs: PositiveMs,
    sharedModelName: NonEmptyString,
    batching: BatchingCodec,
  },
);

/** One model of a `modelRunner` step (MLRun's `add_model` arguments, in camelCase). */
export interface ModelEntry {
  /** The model's name in the step, its key in merged outputs, and its endpoint name. */
  readonly endpointName: string;
  /**
   * A registered name, a class (in-process mechanisms only), `{ module, export }`, or a `Model`
   * instance (in-process mechanisms only; it brings its own params and artifact, is loaded once
   * however many steps use it, and is closed by you, not by the step).
   */
  readonly modelClass: string | ModelClass | ModuleRef | Model;
  readonly executionMechanism: ExecutionMechanism;
  /**
   * The model's artifact, or the path (absolute, or relative to the working directory) or `file:`
   * URL of its JSON file, read with `loadArtifact`'s rules when the step is configured.
   */
  readonly modelArtifact?: ModelArtifact | LLMPromptArtifact | string;
  readonly labels?: Readonly<Record<string, string>> | readonly string[];
  /** How the endpoint registry treats an existing endpoint of this name; default `'inplace'`. */
  readonly creationStrategy?: CreationStrategy;
  /** Feature names for monitoring. */
  readonly inputs?: readonly string[];
  /** Label names for monitoring. */
  readonly outputs?: readonly string[];
  /** Dot path of the model's input in the body; the whole body when absent. */
  readonly inputPath?: string;
  /** Dot path where the model's return value is written into a copy of the body. */
  readonly resultPath?: string;
  /** Constructor parameters. */
  readonly params?: Readonly<Record<string, unknown>>;
  /** This model's own concurrency (its lane); default: the step's `maxInFlight`. */
  readonly maxInFlight?: number;
  /** Per call; on expiry the call is aborted and the model's output is a `ModelTimeoutError`. */
  readonly timeoutMs?: number;
  /**
   * Dynamic batching: the model's lane collects up to `maxBatchSize` calls, waiting at most
   * `maxWaitMs` from the first, and makes one `predictBatch(bodies, contexts)` call. Timeouts and
   * cancellation still apply per call.
   */
  readonly batching?: Batching;
  /** Set by `sharedModelProxy()`: the shared model this proxy reaches. */
  readonly sharedModelName?: string;
}

/**
 * Validates a step's model list: each entry's shape, unique endpoint names, a consistent
 * `params.name`, and that pool mechanisms get a class they can load in a worker.
 */
export function decodeModelEntries(value: unknown, path: string): readonly ModelEntry[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new ConfigError([{ path, expected: 'a non-empty array of model entries', actual: Array.isArray(value) ? '[]' : typeof value }]);
  }
  const seen = new Map<string, number>();
  return Object.freeze(
    value.map((raw, i) => {
      const at = `${path}[${i}]`;
      let entry = decodeOrThrow(ModelEntryCodec, raw, at) as ModelEntry;
      if (typeof entry.modelArtifact === 'string')
        entry = { ...entry, modelArtifact: readArtifact(entry.modelArtifact, `${at}.modelArtifact`) };
      const first = seen.get(entry.endpointName);
      if (first !== undefined) {
        throw new ConfigError([
          {
            path: `${at}.endpointName`,
            expected: `a name not used by another model of the step`,
            actual: `'${entry.endpointName}', already used by ${path}[${first}]`,
          },
        ]);
      }
      seen.set(entry.endpointName, i);
      const paramName = entry.params?.name;
      if (paramName !== undefined && paramName !== entry.endpointName) {
        throw new ConfigError([
          {
            path: `${at}.params.name`,
            expected: `'${entry.endpointName}' (the endpointName) or nothing`,
            actual: JSON.stringify(paramName),
          },
        ]);
      }
      // A proxy ('shared_executor') names its shared model's class for monitoring only: never loaded by it.
      const loadsInWorker = !IN_PROCESS_MECHANISMS.includes(entry.executionMechanism) && entry.executionMechanism !== 'shared_executor';
      // A proxy's modelClass is its shared model's, for monitoring only: the graph checked that one.
      if (isModelInstance(entry.modelClass)) {
        if (entry.executionMechanism !== 'shared_executor') checkInstance(entry, entry.modelClass, at, loadsInWorker);
      } else if (typeof entry.modelClass === 'object') validateModuleRef(entry.modelClass, `${at}.modelClass`);
      if (
        typeof entry.modelClass === 'function' &&
        typeof (entry.modelClass.prototype as { predict?: unknown } | undefined)?.predict !== 'function'
      ) {
        throw new ConfigError([
          {
            path: `${at}.modelClass`,
            expected: 'a Model class (with a predict method)',
            actual: `class ${entry.modelClass.name || '(anonymous)'}`,
          },
        ]);
      }
      // Workers receive params and artifacts as JSON: say so now, not when the pool starts.
      if (loadsInWorker) assertWorkerData(entry, at);
      if (typeof entry.modelClass === 'function' && loadsInWorker) {
        throw new ConfigError([
          {
            path: `${at}.modelClass`,
            expected:
              `a registered name or { module, export } for executionMechanism '${entry.executionMechanism}' ` +
              `(the class is loaded inside a worker): registerModel('${entry.modelClass.name || 'MyModel'}', ` +
              `{ module: <absolute path or file: URL>, export: '${entry.modelClass.name || 'MyModel'}' })`,
            actual: `class ${entry.modelClass.name || '(anonymous)'}`,
          },
        ]);
      }
      return Object.freeze({ ...entry });
    }),
  );
}

/**
 * An artifact named by a path or `file:` URL, read now. MLRun's `store://` and other remote URIs
 * need an artifact store rxserve does not have: they are refused, as is a file that cannot be read.
 */
function readArtifact(ref: string, path: string): ModelArtifact | LLMPromptArtifact {
  if (/^[a-z][a-z0-9+.-]*:/i.test(ref) && !ref.startsWith('file:') && !/^[a-z]:[\\/]/i.test(ref)) {
    throw new ConfigError([
      { path, expected: 'an artifact, or the path or file: URL of its JSON file (rxserve has no artifact store)', actual: `'${ref}'` },
    ]);
  }
  try {
    return readArtifactFile(ref, path);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const cause = toError(error);
    throw new ConfigError(
      [{ path, expected: 'the path or file: URL of a readable artifact JSON file', actual: `'${ref}' (${cause.message})` }],
      { cause },
    );
  }
}

/**
 * A model given as an instance (MLRun's `model_class` may be one): it runs in this process only,
 * and was constructed already, so constructor parameters beside it would be silently ignored.
 */
function checkInstance(entry: ModelEntry, model: Model, at: string, loadsInWorker: boolean): void {
  const className = modelClassName(model);
  if (loadsInWorker) {
    throw new ConfigError([
      {
        path: `${at}.modelClass`,
        expected:
          `a registered name or { module, export } for executionMechanism '${entry.executionMechanism}' ` +
          `(a worker constructs its own model; an instance cannot be sent to it): registerModel('${className}', ` +
          `{ module: <absolute path or file: URL>, export: '${className}' }) and its constructor parameters as params, ` +
          `or executionMechanism 'naive' / 'asyncio' for the instance`,
        actual: `a ${className} instance`,
      },
    ]);
  }
  for (const field of ['params', 'modelArtifact'] as const) {
    if (entry[field] !== undefined) {
      throw new ConfigError([
        {
          path: `${at}.${field}`,
          expected: `nothing when modelClass is a Model instance (it is constructed already: pass ${field === 'params' ? 'its parameters' : 'the artifact'} to new ${className}({ name, ${field === 'params' ? '...params' : 'artifact'} }))`,
          actual: field === 'params' ? JSON.stringify(Object.keys(entry.params ?? {})) : 'an artifact',
        },
      ]);
    }
  }
  if (model.name !== entry.endpointName) {
    throw new ConfigError([
      {
        path: `${at}.modelClass`,
        expected: `a Model named '${entry.endpointName}' (the endpointName)`,
        actual: `a ${className} named ${JSON.stringify(model.name)}`,
      },
    ]);
  }
}

/** Throws `ConfigError` naming the path when an entry's params or artifact are not JSON data (workers get them as JSON). */
export function assertWorkerData(entry: Pick<ModelEntry, 'params' | 'modelArtifact' | 'executionMechanism'>, at: string): void {
  for (const [field, value] of [
    ['params', entry.params],
    ['modelArtifact', entry.modelArtifact],
  ] as const) {
    const bad = firstNonJson(value, `${at}.${field}`);
    if (bad)
      throw new ConfigError([
        { path: bad, expected: `JSON data (executionMechanism '${entry.executionMechanism}' sends it to workers as JSON)` },
      ]);
  }
}

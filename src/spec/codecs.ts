// The spec file's codecs (DESIGN §14): what loadGraph accepts, and what the JSON Schema is made from.
import * as t from 'io-ts';
import { DotPath, NonEmptyString, guard, strict } from '../config.js';
import { CreationStrategyCodec } from '../model/entry.js';
import { annotate, type JsonSchema } from './schema.js';

// Leaves: each guard carries the JSON Schema that says the same thing.
const Name = annotate(NonEmptyString, { type: 'string', minLength: 1 });
const Path = annotate(DotPath, { type: 'string', pattern: '^[^.]+(\\.[^.]+)*$', description: "a dot path like 'a.b.c'" });
const isPositiveInt = (u: unknown) => typeof u === 'number' && Number.isInteger(u) && u > 0;
const PositiveInt = annotate(guard<number>('a positive integer', isPositiveInt), { type: 'integer', minimum: 1 });
const NonNegativeInt = annotate(
  guard<number>('a non-negative integer', (u) => typeof u === 'number' && Number.isInteger(u) && u >= 0),
  { type: 'integer', minimum: 0 },
);
const Port = annotate(
  guard<number>('a port number (0 to 65535; 0 picks a free port)', (u) => typeof u === 'number' && Number.isInteger(u) && u >= 0 && u <= 65535),
  { type: 'integer', minimum: 0, maximum: 65535 },
);
const PositiveMs = annotate(
  guard<number>('a positive number of milliseconds', (u) => typeof u === 'number' && u > 0 && Number.isFinite(u)),
  { type: 'number', exclusiveMinimum: 0 },
);
const Percentage = annotate(
  guard<number>('a percentage above 0 and at most 100', (u) => typeof u === 'number' && u > 0 && u <= 100),
  { type: 'number', exclusiveMinimum: 0, maximum: 100 },
);
const RedisUrl = annotate(
  guard<string>("a 'redis://' or 'rediss://' URL", (u) => typeof u === 'string' && /^rediss?:\/\//.test(u)),
  { type: 'string', pattern: '^rediss?://' },
);
const StartId = annotate(
  guard<string>("a stream id ('0', '$' or '<ms>-<seq>')", (u) => typeof u === 'string' && /^(\$|\d+(-\d+)?)$/.test(u)),
  { type: 'string', pattern: '^(\\$|\\d+(-\\d+)?)$' },
);
const Strings = t.array(t.string);
const Labels = t.union([t.record(t.string, t.string), Strings], 'Record<string, string> | string[]');
const Artifact = t.union([t.UnknownRecord, Name], 'an artifact, or the path of its JSON file (relative to the spec)');
const Params = t.UnknownRecord;

/** `{ module, export? }`: a module path (relative to the spec's folder) and one of its exports (default `'default'`). */
export const ModuleRef = strict('ModuleRef', { module: Name }, { export: Name });
export type ModuleRef = t.TypeOf<typeof ModuleRef>;

const ModelClass = t.union([Name, ModuleRef], 'a registered model name, or { module, export }');
/** Every mechanism but 'shared_executor': a proxy is written `{ endpointName, sharedModelName }`. */
const Mechanism = t.keyof(
  { naive: null, asyncio: null, thread_pool: null, process_pool: null, dedicated_process: null },
  "'naive' | 'asyncio' | 'thread_pool' | 'process_pool' | 'dedicated_process'",
);

const poolProps = { maxThreads: PositiveInt, maxProcesses: PositiveInt, poolFactor: PositiveInt };
const GraphPool = strict('GraphPool', {}, poolProps);
const StepPool = strict('StepPool', {}, { ...poolProps, maxBatch: PositiveInt, cancelGraceMs: NonNegativeInt });

const NonNegativeMs = annotate(
  guard<number>('a non-negative number of milliseconds', (u) => typeof u === 'number' && u >= 0 && Number.isFinite(u)),
  { type: 'number', minimum: 0 },
);
const Batching = strict('Batching', { maxBatchSize: PositiveInt, maxWaitMs: NonNegativeMs }, {});

const Monitoring = strict('Monitoring', {}, { samplingPercentage: Percentage, registryPath: Name });

export const SharedModelSpec = strict(
  'SharedModel',
  { name: Name, modelClass: ModelClass, executionMechanism: Mechanism },
  {
    modelArtifact: Artifact,
    inputs: Strings,
    outputs: Strings,
    inputPath: Path,
    resultPath: Path,
    params: Params,
    maxInFlight: PositiveInt,
  },
);
export type SharedModelSpec = t.TypeOf<typeof SharedModelSpec>;

export const ModelSpec = strict(
  'Model',
  { endpointName: Name, modelClass: ModelClass, executionMechanism: Mechanism },
  {
    modelArtifact: Artifact,
    labels: Labels,
    creationStrategy: CreationStrategyCodec,
    inputs: Strings,
    outputs: Strings,
    inputPath: Path,
    resultPath: Path,
    params: Params,
    maxInFlight: PositiveInt,
    timeoutMs: PositiveMs,
    batching: Batching,
  },
);
export type ModelSpec = t.TypeOf<typeof ModelSpec>;

export const ProxySpec = strict(
  'SharedModelProxy',
  { endpointName: Name, sharedModelName: Name },
  { modelArtifact: Artifact, labels: Labels, creationStrategy: CreationStrategyCodec },
);
export type ProxySpec = t.TypeOf<typeof ProxySpec>;

/**
 * One codec out of several, picked by looking at the value, then validated in the same context:
 * its errors keep their full paths (an io-ts union would report only "expected A | B" at its own path).
 */
function pick<A>(name: string, choose: (u: unknown) => t.Type<any, unknown, unknown>, members: t.Mixed[], schema: (walked: JsonSchema[]) => JsonSchema) {
  const codec = new t.Type<A, unknown, unknown>(
    name,
    (u): u is A => choose(u).is(u),
    (u, c) => choose(u).validate(u, c) as t.Validation<A>,
    t.identity,
  );
  return annotate(codec, (walk) => schema(members.map(walk)));
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === 'object' && u !== null && !Array.isArray(u);

/** A model entry, or a proxy of a shared model when it names `sharedModelName`. */
const ModelOrProxy = pick<ModelSpec | ProxySpec>(
  'ModelOrProxy',
  (u) => (isRecord(u) && 'sharedModelName' in u ? ProxySpec : ModelSpec),
  [ModelSpec, ProxySpec],
  (members) => ({ oneOf: members }),
);

export const ModelRunnerSpec = strict(
  'ModelRunner',
  { models: t.array(ModelOrProxy) },
  {
    name: Name,
    selector: t.union([Name, ModuleRef], 'a registered selector name, or { module, export }'),
    selectorParams: Params,
    raiseException: t.boolean,
    ordered: t.boolean,
    maxInFlight: PositiveInt,
    maxQueue: NonNegativeInt,
    pool: StepPool,
  },
);
export type ModelRunnerSpec = t.TypeOf<typeof ModelRunnerSpec>;

export const FunctionStepSpec = strict(
  'FunctionStep',
  { module: Name },
  { export: Name, name: Name, inputPath: Path, resultPath: Path, maxInFlight: PositiveInt, maxQueue: NonNegativeInt, ordered: t.boolean },
);
export type FunctionStepSpec = t.TypeOf<typeof FunctionStepSpec>;

export const OnErrorSpec = strict('OnError', { module: Name }, { export: Name, name: Name });
export type OnErrorSpec = t.TypeOf<typeof OnErrorSpec>;

/** A router: a key (dot path into the event, or a key function) and a list of steps per route. */
export interface RouterSpec {
  readonly key: string | ModuleRef;
  readonly routes: Readonly<Record<string, readonly StepSpec[]>>;
  readonly name?: string;
  readonly defaultRoute?: string;
  readonly idleMs?: number;
}

/** One step of a list: exactly one of its keys. */
export interface StepSpec {
  readonly modelRunner?: ModelRunnerSpec;
  readonly router?: RouterSpec;
  readonly step?: FunctionStepSpec;
  readonly onError?: OnErrorSpec;
}

const STEP_KINDS = ['modelRunner', 'router', 'step', 'onError'] as const;

export const StepSpec: t.Type<StepSpec, unknown, unknown> = t.recursion<StepSpec, unknown, unknown>('Step', (self) => {
  const router = strict(
    'Router',
    { key: t.union([Path, ModuleRef], "a dot path into the event ('body.route'), or { module, export } naming a key function"), routes: t.record(t.string, t.array(self)) },
    { name: Name, defaultRoute: Name, idleMs: PositiveInt },
  );
  const fields = strict('Step', {}, { modelRunner: ModelRunnerSpec, router, step: FunctionStepSpec, onError: OnErrorSpec });
  const exactlyOne = new t.Type<StepSpec, unknown, unknown>(
    'Step',
    (u): u is StepSpec => fields.is(u) && Object.keys(u as object).length === 1,
    (u, c) => {
      const decoded = fields.validate(u, c);
      if (decoded._tag === 'Left') return decoded as t.Validation<StepSpec>;
      const kinds = Object.keys(u as object);
      if (kinds.length === 1) return t.success(decoded.right as StepSpec);
      return t.failure(u, c, `a step is exactly one of ${STEP_KINDS.join(', ')}; got ${kinds.length === 0 ? 'none' : kinds.join(' and ')}`);
    },
    t.identity,
  );
  return annotate(exactlyOne, (walk) => ({ ...walk(fields), minProperties: 1, maxProperties: 1 }));
});

const ServeSpec = strict(
  'Serve',
  {},
  { port: Port, host: Name, maxBodyBytes: PositiveInt, timeoutMs: PositiveInt, models: t.array(Name), apiKeys: t.array(Name) },
);
export type ServeSpec = t.TypeOf<typeof ServeSpec>;

const RedisSource = strict(
  'RedisSource',
  { url: RedisUrl, stream: Name, group: Name },
  {
    consumer: Name,
    field: Name,
    startId: StartId,
    maxInFlight: PositiveInt,
    batchSize: PositiveInt,
    blockMs: PositiveInt,
    claimIdleMs: PositiveInt,
    maxDeliveries: PositiveInt,
    deadLetterStream: Name,
    closeTimeoutMs: PositiveInt,
  },
);
const SourceSpec = strict('Source', { redis: RedisSource, output: Name }, {});
export type SourceSpec = t.TypeOf<typeof SourceSpec>;

/** A whole spec file. */
export const GraphSpec = strict(
  'GraphSpec',
  { steps: t.array(StepSpec) },
  {
    $schema: t.string,
    name: Name,
    pool: GraphPool,
    monitoring: Monitoring,
    sharedModels: t.array(SharedModelSpec),
    serve: ServeSpec,
    source: SourceSpec,
  },
);
export type GraphSpec = t.TypeOf<typeof GraphSpec>;

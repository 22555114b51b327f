// The spec file's codecs (docs/design.md §14): what loadGraph accepts, and what the JSON Schema is made from.
// Every field is the runtime's own codec (one source: a field added to the runtime reaches the spec);
// only what the spec form really changes is overridden here, and what it leaves out says why.
import * as t from 'io-ts';
import { DotPath, NonEmptyString, finite, guard, omitProps, pickProps, positiveInt, strict, type StrictType } from '../decode.js';
import { PoolOptionsCodec } from '../execution/poolOptions.js';
import { GraphOptionsCodec, MonitoringOptionsCodec, ProxyCodec, SharedModelCodec } from '../graph/graphOptions.js';
import { ArtifactRefCodec, ExecutionMechanismCodec, ModelEntryCodec, ModuleRefCodec } from '../model/entry.js';
import { ModelRunnerConfigCodec } from '../operators/modelRunner.js';
import { OnErrorOptionsCodec } from '../operators/onError.js';
import { RouterConfigCodec } from '../operators/router.js';
import { ModelRouterConfigCodec } from '../operators/modelRouter.js';
import { ParallelRunConfigCodec } from '../operators/parallelRun.js';
import { VotingEnsembleConfigCodec } from '../operators/votingEnsemble.js';
import { StepOptionsCodec } from '../operators/step.js';
import { HttpStepOptionsCodec } from '../operators/internal/http.js';
import { ServeOptionsCodec } from '../serve/serve.js';
import { CommitOptionsCodec, RedisStreamOptionsCodec, RedisUrl } from '../streams/options.js';
import { QueueStepOptionsCodec } from '../streams/queueStep.js';
import { annotate, toJsonSchema, type JsonSchema } from './schema.js';

/**
 * The runtime's fields as a spec takes them. JSON has no Infinity: a field that also takes
 * `Infinity` at runtime takes a finite number in a spec (YAML's `.inf` too), as its schema says.
 */
function finiteProps<P extends t.Props>(props: P): P {
  return Object.fromEntries(Object.entries(props).map(([key, codec]) => [key, finite(codec)])) as P;
}

/** `{ module, export? }`: a module path (relative to the spec's folder) and one of its exports (default `'default'`). */
export const ModuleRef = ModuleRefCodec;
export type ModuleRef = t.TypeOf<typeof ModuleRef>;

// What the spec form changes: a model class is named (registered, or { module, export }), never a
// class or an instance; an artifact's path is relative to the spec's folder.
const ModelClass = t.union([NonEmptyString, ModuleRef], 'a registered model name, or { module, export }');
const Artifact = t.union(ArtifactRefCodec.types, 'an artifact, or the path of its JSON file (relative to the spec)');
/** Every mechanism but 'shared_executor': a proxy is written `{ endpointName, sharedModelName }`. */
const { shared_executor: _proxy, ...mechanisms } = ExecutionMechanismCodec.keys;
const Mechanism = t.keyof(
  mechanisms,
  Object.keys(mechanisms)
    .map((m) => `'${m}'`)
    .join(' | '),
);

// Graph-wide pools take what graph.configurePoolResource() takes.
const GraphPool = strict('GraphPool', {}, pickProps(PoolOptionsCodec.optional, 'maxThreads', 'maxProcesses', 'poolFactor'));
// piscina: a pool instance, not data.
const StepPool = strict('StepPool', {}, omitProps(PoolOptionsCodec.optional, 'piscina'));

export const SharedModelSpec = strict(
  'SharedModel',
  { ...SharedModelCodec.required, modelClass: ModelClass, executionMechanism: Mechanism },
  // override: a spec builds a new graph, whose shared models are all listed here.
  finiteProps({ ...omitProps(SharedModelCodec.optional, 'override'), modelArtifact: Artifact }),
);
export type SharedModelSpec = t.TypeOf<typeof SharedModelSpec>;

export const ModelSpec = strict(
  'Model',
  { ...ModelEntryCodec.required, modelClass: ModelClass, executionMechanism: Mechanism },
  // sharedModelName: a proxy of a shared model is written as ProxySpec.
  finiteProps({ ...omitProps(ModelEntryCodec.optional, 'sharedModelName'), modelArtifact: Artifact }),
);
export type ModelSpec = t.TypeOf<typeof ModelSpec>;

export const ProxySpec = strict(
  'SharedModelProxy',
  // sharedModelName is required here: it tells a proxy from a model.
  { ...ProxyCodec.required, ...pickProps(ProxyCodec.optional, 'sharedModelName') },
  { ...omitProps(ProxyCodec.optional, 'sharedModelName'), modelArtifact: Artifact },
);
export type ProxySpec = t.TypeOf<typeof ProxySpec>;

/**
 * One codec out of several, picked by looking at the value, then validated in the same context:
 * its errors keep their full paths (an io-ts union would report only "expected A | B" at its own path).
 */
function pick<A>(name: string, choose: (u: unknown) => t.Mixed, members: t.Mixed[], schema: (walked: JsonSchema[]) => JsonSchema) {
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
  finiteProps({
    // executor, graph: objects a spec cannot hold (the graph is the spec's own).
    ...omitProps(ModelRunnerConfigCodec.optional, 'executor', 'graph'),
    selector: t.union([NonEmptyString, ModuleRef], 'a registered selector name, or { module, export }'),
    pool: StepPool,
  }),
);
export type ModelRunnerSpec = t.TypeOf<typeof ModelRunnerSpec>;

export const FunctionStepSpec = strict(
  'FunctionStep',
  ModuleRef.required,
  finiteProps({ ...ModuleRef.optional, ...StepOptionsCodec.optional }),
);
export type FunctionStepSpec = t.TypeOf<typeof FunctionStepSpec>;

export const OnErrorSpec = strict('OnError', ModuleRef.required, { ...ModuleRef.optional, ...OnErrorOptionsCodec.optional });
export type OnErrorSpec = t.TypeOf<typeof OnErrorSpec>;

// remoteStep / batchHttpRequests: the expressions are templates ('http://svc/{body.user}'),
// compiled to functions by load.ts, which also checks their paths.
const Template = annotate(
  guard<string>("a template like 'http://svc/users/{body.user}'", (u) => typeof u === 'string' && u.length > 0),
  {
    type: 'string',
    minLength: 1,
    description:
      'text with {dot.path} placeholders read from the event (body, path, id, headers, metadata, method; item in batchHttpRequests)',
  },
);
const httpStepProps = finiteProps({ ...HttpStepOptionsCodec.optional, urlExpression: Template, bodyExpression: Template });
export const RemoteStepSpec = strict('RemoteStep', {}, httpStepProps);
export type RemoteStepSpec = t.TypeOf<typeof RemoteStepSpec>;
export const BatchHttpRequestsSpec = strict('BatchHttpRequests', {}, httpStepProps);
export type BatchHttpRequestsSpec = t.TypeOf<typeof BatchHttpRequestsSpec>;
// redis: a spec names the server; queueStep() also takes a client.
export const QueueStepSpec = strict(
  'QueueStep',
  { ...QueueStepOptionsCodec.required, redis: RedisUrl },
  finiteProps(QueueStepOptionsCodec.optional),
);
export type QueueStepSpec = t.TypeOf<typeof QueueStepSpec>;

// The steps that nest lists of steps: codecs made from the codec of a step (`t.recursion` below
// gives it), so each type is the codec's own (`t.TypeOf`), not a second description of it.
const routesOf = <S extends t.Mixed>(step: S) => ({ routes: t.record(t.string, t.array(step)) });
const routerCodec = <S extends t.Mixed>(step: S) =>
  strict(
    'Router',
    {
      key: t.union([DotPath, ModuleRef], "a dot path into the event ('body.route'), or { module, export } naming a key function"),
      ...routesOf(step),
    },
    finiteProps(RouterConfigCodec.optional),
  );
// The router family (docs/design.md §18): the runtime's options, routes as lists of steps.
const modelRouterCodec = <S extends t.Mixed>(step: S) =>
  strict('ModelRouter', routesOf(step), finiteProps(ModelRouterConfigCodec.optional));
const parallelRunCodec = <S extends t.Mixed>(step: S) =>
  strict('ParallelRun', routesOf(step), finiteProps(ParallelRunConfigCodec.optional));
const votingEnsembleCodec = <S extends t.Mixed>(step: S) =>
  strict('VotingEnsemble', routesOf(step), finiteProps(VotingEnsembleConfigCodec.optional));
type StepCodec = t.Type<StepSpec, unknown, unknown>;

/** A router: a key (dot path into the event, or a key function) and a list of steps per route. */
export type RouterSpec = t.TypeOf<ReturnType<typeof routerCodec<StepCodec>>>;
/** The router family (docs/design.md §18): a list of steps per route, and the operator's own options. */
export type ModelRouterSpec = t.TypeOf<ReturnType<typeof modelRouterCodec<StepCodec>>>;
export type ParallelRunSpec = t.TypeOf<ReturnType<typeof parallelRunCodec<StepCodec>>>;
export type VotingEnsembleSpec = t.TypeOf<ReturnType<typeof votingEnsembleCodec<StepCodec>>>;

/** One step of a list: exactly one of its keys. */
export interface StepSpec {
  readonly modelRunner?: ModelRunnerSpec;
  readonly router?: RouterSpec;
  readonly modelRouter?: ModelRouterSpec;
  readonly parallelRun?: ParallelRunSpec;
  readonly votingEnsemble?: VotingEnsembleSpec;
  readonly step?: FunctionStepSpec;
  readonly onError?: OnErrorSpec;
  readonly remoteStep?: RemoteStepSpec;
  readonly batchHttpRequests?: BatchHttpRequestsSpec;
  readonly queueStep?: QueueStepSpec;
}

const STEP_KINDS = [
  'modelRunner',
  'router',
  'modelRouter',
  'parallelRun',
  'votingEnsemble',
  'step',
  'onError',
  'remoteStep',
  'batchHttpRequests',
  'queueStep',
] as const;

export const StepSpec: t.Type<StepSpec, unknown, unknown> = t.recursion<StepSpec, unknown, unknown>('Step', (self) => {
  const fields = strict(
    'Step',
    {},
    {
      modelRunner: ModelRunnerSpec,
      router: routerCodec(self),
      modelRouter: modelRouterCodec(self),
      parallelRun: parallelRunCodec(self),
      votingEnsemble: votingEnsembleCodec(self),
      step: FunctionStepSpec,
      onError: OnErrorSpec,
      remoteStep: RemoteStepSpec,
      batchHttpRequests: BatchHttpRequestsSpec,
      queueStep: QueueStepSpec,
    },
  );
  const exactlyOne = new t.Type<StepSpec, unknown, unknown>(
    'Step',
    (u): u is StepSpec => fields.is(u) && Object.keys(u).length === 1,
    (u, c) => {
      const decoded = fields.validate(u, c);
      if (decoded._tag === 'Left') return decoded;
      const kinds = Object.keys(u as object);
      if (kinds.length === 1) return t.success(decoded.right);
      return t.failure(u, c, `a step is exactly one of ${STEP_KINDS.join(', ')}; got ${kinds.length === 0 ? 'none' : kinds.join(' and ')}`);
    },
    t.identity,
  );
  return annotate(exactlyOne, (walk) => ({ ...walk(fields), minProperties: 1, maxProperties: 1 }));
});

// ---- flows (docs/design.md §17) ---------------------------------------------------------------------

/** `choice: { field }` (MLRun's ChoiceByField) or `choice: { module, export }` naming a select function. */
const ChoiceByFieldSpec = strict('ChoiceByField', { field: DotPath }, {});
const ChoiceSpec = pick<{ field: string } | ModuleRef>(
  'Choice',
  (u) => (isRecord(u) && 'field' in u ? ChoiceByFieldSpec : ModuleRef),
  [ChoiceByFieldSpec, ModuleRef],
  (members) => ({ oneOf: members }),
);
const Names = t.union([NonEmptyString, t.array(NonEmptyString)], 'a step name or a list of step names');

/**
 * An object with its own fields (`own`) and exactly one step kind out of `kinds`, the kind checked
 * by `Step` in the same context (so a kind's mistakes keep their full path).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- io-ts codecs are invariant in their type (encode takes one): any object codec goes
function withOneKind<A>(name: string, own: StrictType<any>, kinds: readonly string[]) {
  // The step kinds are checked by Step below; a kind with a codec of its own here (choice) keeps it.
  const kindProps = Object.fromEntries(kinds.filter((k) => !(k in own.optional)).map((k) => [k, t.unknown]));
  const fields = strict(name, own.required, { ...own.optional, ...kindProps });
  const codec = new t.Type<A, unknown, unknown>(
    name,
    (u): u is A => fields.is(u) && kinds.filter((k) => k in (u as object)).length === 1,
    (u, c) => {
      const decoded = fields.validate(u, c);
      if (decoded._tag === 'Left') return decoded;
      const present = kinds.filter((k) => k in (u as object));
      if (present.length !== 1) {
        return t.failure(
          u,
          c,
          `${name === 'FlowStep' ? 'a flow step' : 'an error handler'} is exactly one of ${kinds.join(', ')}; got ${present.length === 0 ? 'none' : present.join(' and ')}`,
        );
      }
      const kind = present[0];
      if (kind !== 'choice') {
        const checked = StepSpec.validate({ [kind]: (u as Record<string, unknown>)[kind] }, c);
        if (checked._tag === 'Left') return checked;
      }
      return t.success(u as A);
    },
    t.identity,
  );
  return annotate(codec, (walk) => {
    walk(StepSpec); // defines #/$defs/Step, whose kinds the properties below point into
    const properties: Record<string, JsonSchema> = {};
    for (const [key, field] of Object.entries({ ...own.required, ...own.optional })) properties[key] = walk(field);
    for (const k of kinds) if (k !== 'choice') properties[k] = { $ref: `#/$defs/Step/properties/${k}` };
    return {
      type: 'object',
      properties,
      required: Object.keys(own.required),
      additionalProperties: false,
      oneOf: kinds.map((k) => ({ required: [k] })),
    };
  });
}

/** A flow's error handler (`flow.errorHandler`): a name and one step kind. */
export interface FlowErrorHandlerSpec extends StepSpec {
  readonly name: string;
}
/** A step's error handler: also `before`, steps downstream of the failing one. */
export interface FlowStepErrorHandlerSpec extends FlowErrorHandlerSpec {
  readonly before?: string | readonly string[];
}
/** One step of a flow: a name, its place, and one step kind or a choice. */
export interface FlowStepSpec extends StepSpec {
  readonly name: string;
  /** The steps it comes after; default the previous step in the list; `[]` makes another entry. */
  readonly after?: string | readonly string[];
  readonly respond?: boolean;
  readonly maxIterations?: number;
  readonly cycleTo?: string | readonly string[];
  readonly errorHandler?: FlowStepErrorHandlerSpec;
  readonly choice?: { readonly field: string } | ModuleRef;
}

const FlowStepErrorHandlerSpec = withOneKind<FlowStepErrorHandlerSpec>(
  'FlowStepErrorHandler',
  strict('FlowStepErrorHandler', { name: NonEmptyString }, { before: Names }),
  STEP_KINDS,
);
const FlowErrorHandlerSpec = withOneKind<FlowErrorHandlerSpec>(
  'FlowErrorHandler',
  strict('FlowErrorHandler', { name: NonEmptyString }, {}),
  STEP_KINDS,
);
export const FlowStepSpec = withOneKind<FlowStepSpec>(
  'FlowStep',
  strict(
    'FlowStep',
    { name: NonEmptyString },
    {
      after: Names,
      respond: t.boolean,
      maxIterations: positiveInt(),
      cycleTo: Names,
      errorHandler: FlowStepErrorHandlerSpec,
      choice: ChoiceSpec,
    },
  ),
  [...STEP_KINDS, 'choice'],
);

/** `flow:` — a flow instead of `steps:` (docs/design.md §17). */
export const FlowSpec = strict(
  'Flow',
  { steps: t.array(FlowStepSpec) },
  { name: NonEmptyString, maxInFlight: positiveInt(), errorHandler: FlowErrorHandlerSpec },
);
export type FlowSpec = t.TypeOf<typeof FlowSpec>;

const ServeSpec = strict(
  'Serve',
  {},
  // graph and pipeline are the spec's own.
  finiteProps(omitProps(ServeOptionsCodec.optional, 'graph')),
);
export type ServeSpec = t.TypeOf<typeof ServeSpec>;

const RedisSource = strict(
  'RedisSource',
  // url: the spec names the server; redisStream() also takes a client.
  { url: RedisUrl, ...omitProps(RedisStreamOptionsCodec.required, 'redis') },
  // metrics: a prom-client registry, not data.
  finiteProps(omitProps(RedisStreamOptionsCodec.optional, 'metrics')),
);
// output: the stream the answers are committed to.
const SourceSpec = strict('Source', { redis: RedisSource, output: CommitOptionsCodec.required.stream }, {});
export type SourceSpec = t.TypeOf<typeof SourceSpec>;

const graphSpecFields = {
  // Exactly one of steps and flow: checked by loadGraph, said by the schema's oneOf.
  steps: t.array(StepSpec),
  flow: FlowSpec,
};

/** A whole spec file: `steps:` (piped in order) or `flow:` (a flow, §17), with the graph's options. */
export const GraphSpec = strict(
  'GraphSpec',
  {},
  {
    ...graphSpecFields,
    $schema: t.string,
    ...GraphOptionsCodec.optional,
    monitoring: strict('Monitoring', {}, MonitoringOptionsCodec.optional),
    pool: GraphPool,
    sharedModels: t.array(SharedModelSpec),
    serve: ServeSpec,
    source: SourceSpec,
  },
);
export type GraphSpec = t.TypeOf<typeof GraphSpec>;
// The schema says what loadGraph checks after decoding: exactly one of steps and flow.
const GraphSpecFields = strict('GraphSpec', {}, GraphSpec.optional);
annotate(GraphSpec, (walk) => ({ ...walk(GraphSpecFields), oneOf: [{ required: ['steps'] }, { required: ['flow'] }] }));
/** The spec's JSON Schema (draft 2020-12), as `rxserve schema` prints it. */
export function specSchema(): Record<string, unknown> {
  return toJsonSchema(GraphSpec, {
    $id: 'https://github.com/rxserve/rxserve/blob/main/docs/spec.md',
    title: 'rxserve graph spec',
    description: 'A serving graph as data (docs/design.md §14): loadGraph() and the rxserve command read it.',
  });
}

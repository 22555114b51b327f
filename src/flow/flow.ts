// The flow builder (docs/design.md §17, MLRun's flow topology): named steps joined by `to` / `after`,
// one responder, error handlers, cycles with a bound; `build()` compiles it into one operator.
// Just over 300 lines: the builder's whole public surface (flow, handles), one documented method each.
import * as t from 'io-ts';
import type { OperatorFunction } from 'rxjs';
import { NonEmptyString, decodeOrThrow, describeValue, guard, positiveInt, strict } from '../decode.js';
import { ConfigError } from '../errors.js';
import type { ServingEvent } from '../event.js';
import type { GraphRef } from '../execution/provider.js';
import { isChoice, type Choice } from './choice.js';
import { compile, type FlowDecl, type HandlerDecl, type StepDecl, type StepOperator } from './plan.js';
import { runLinear } from './linear.js';
import { runFlow } from './run.js';
import { ATTACH_FLOW, FLOW_RUNTIME, FlowRuntime, isFlowHost, type FlowHost } from './runtime.js';

/** Options of `flow()`. */
export interface FlowOptions {
  /** The flow's name (in `graph.describe()`, the dashboard and its errors); default `'flow'`. */
  readonly name?: string;
  /**
   * The graph the flow belongs to: `graph.describe()` and the dashboard show it, and
   * `graph.close()` waits for its background branches. `graph.flow()` sets it.
   */
  readonly graph?: GraphRef;
  /**
   * Input events inside the flow at once (answered or not, until their last copy left); one more
   * is answered at once errored with `QueueFullError`. Default 10,000.
   */
  readonly maxInFlight?: number;
}

/** Options of `flow.to()` and `handle.to()`. */
export interface FlowStepOptions {
  /** How many times the step may run for one input event (its bound in a cycle); default unbounded. */
  readonly maxIterations?: number;
}

/** Options of `flow.add()`. */
export interface FlowAddOptions extends FlowStepOptions {
  /**
   * The steps it comes after: it receives each of their outputs (no join). Default: the step added
   * last. `[]` makes it another entry (every entry receives each input event).
   */
  readonly after?: string | readonly string[];
}

/** Options of `handle.errorHandler()`. */
export interface FlowErrorHandlerOptions {
  /** Steps downstream of the failing one that the handler's output goes on to; default none (see `errorHandler`). */
  readonly before?: string | readonly string[];
}

/** What a step runs: an operator from events to events (modelRunner, router, step, a built flow, ...) or a choice. */
export type FlowStepOperator = OperatorFunction<ServingEvent, ServingEvent> | Choice;

const Names = t.union([NonEmptyString, t.array(NonEmptyString)], 'a step name or a list of step names');
const FlowOptionsCodec = strict(
  'FlowOptions',
  {},
  { name: NonEmptyString, graph: guard<FlowHost>('a graph made by createGraph()', isFlowHost), maxInFlight: positiveInt(true) },
);
const StepOptionsCodec = strict('FlowStepOptions', {}, { maxIterations: positiveInt() });
const AddOptionsCodec = strict('FlowAddOptions', {}, { maxIterations: positiveInt(), after: Names });
const HandlerOptionsCodec = strict('FlowErrorHandlerOptions', {}, { before: Names });

const DEFAULT_MAX_IN_FLIGHT = 10_000;

/** @internal How errors name a flow's steps (a spec names them by their place in the file). */
export interface FlowPaths {
  readonly pathOf: (step: string) => string;
  readonly handlerPath: string;
}

const DEFAULT_PATHS: FlowPaths = { pathOf: (step) => `flow.steps['${step}']`, handlerPath: 'flow.errorHandler' };

/**
 * A serving flow: MLRun's flow topology as one RxJS operator.
 *
 * Steps are named (unique in the flow) and joined: `flow.to()` adds after the step added last (the
 * first step is the entry), `handle.to()` after that step, `flow.add(name, op, { after })` after the
 * named steps. A step's output goes to each of its next steps (fan-out, as storey does); a step after
 * several receives each one's events (no join). One step may `respond()`: the built operator emits,
 * per input event, exactly one event — the responder's output — while branches that do not lead to
 * it run on. Without a responder, each input is emitted at once as it came and the work goes on
 * (MLRun's asynchronous flow). Errors, choices, cycles and the build rules: see docs/design.md §17 and
 * docs/flows.md.
 *
 * ## Example
 * ```ts
 * import { choice, createGraph, step } from 'rxserve';
 * const graph = createGraph({ name: 'advisor' });
 * const f = graph.flow();
 * f.to('generate', graph.modelRunner({ models: [writer] }), { maxIterations: 3 })
 *   .to('judge', choice((e) => (e.body.ok ? 'reply' : 'generate')))
 *   .cycleTo('generate');
 * f.add('reply', step(format), { after: 'judge' }).respond();
 * f.add('audit', step(audit), { after: 'generate' });        // a side branch: never answers
 * const pipeline = f.build();                                 // serve(pipeline, { graph })
 * ```
 * @param options Name, graph and bound; validated now.
 * @returns A flow to add steps to, then `build()`.
 */
export function flow(options: FlowOptions = {}): Flow {
  return flowWithPaths(options, DEFAULT_PATHS);
}

/** @internal `flow()` whose errors name steps by `paths` (a spec: by their place in the file). */
export function flowWithPaths(options: FlowOptions, paths: FlowPaths): Flow {
  return new Flow(decodeOrThrow(FlowOptionsCodec, options, 'flow'), paths);
}

/** A flow being declared (see `flow`). */
export class Flow {
  readonly name: string;
  readonly #graph: FlowHost | undefined;
  readonly #maxInFlight: number;
  readonly #paths: FlowPaths;
  readonly #steps: StepDecl[] = [];
  readonly #handles = new Map<string, FlowStep>();
  #handler: HandlerDecl | undefined;
  #built: OperatorFunction<ServingEvent, ServingEvent> | undefined;

  /** @internal Use `flow()` or `graph.flow()`. */
  constructor(options: Omit<FlowOptions, 'graph'> & { readonly graph?: FlowHost }, paths: FlowPaths) {
    this.name = options.name ?? 'flow';
    this.#graph = options.graph;
    this.#maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.#paths = paths;
  }

  /** Adds a step after the step added last (the first step added is the entry); returns its handle. */
  to(name: string, op: FlowStepOperator, options: FlowStepOptions = {}): FlowStep {
    const last = this.#steps.at(-1);
    return this.#add(name, op, decodeOrThrow(StepOptionsCodec, options, this.#paths.pathOf(String(name))), last ? [last.name] : []);
  }

  /**
   * Adds a step after the steps named in `after` (default: the step added last; `[]`: another
   * entry); returns its handle.
   */
  add(name: string, op: FlowStepOperator, options: FlowAddOptions = {}): FlowStep {
    const decoded = decodeOrThrow(AddOptionsCodec, options, this.#paths.pathOf(String(name)));
    const last = this.#steps.at(-1);
    const after =
      decoded.after === undefined ? (last ? [last.name] : []) : typeof decoded.after === 'string' ? [decoded.after] : decoded.after;
    return this.#add(name, op, decoded, after);
  }

  /** The handle of a step added before. */
  step(name: string): FlowStep {
    const handle = this.#handles.get(name);
    if (handle === undefined) {
      throw new ConfigError([
        {
          path: this.#paths.pathOf(name),
          expected: '',
          message: `no step '${name}' in the flow (steps: ${[...this.#handles.keys()].join(', ') || 'none'})`,
        },
      ]);
    }
    return handle;
  }

  /**
   * The handler of every step without its own: it takes their errored events (`error` cleared,
   * `metadata.error = { step, error }`); for a step on the responder's path its output is the
   * response, elsewhere its output ends that branch.
   */
  errorHandler(name: string, op: OperatorFunction<ServingEvent, ServingEvent>): this {
    const path = this.#paths.handlerPath;
    this.#checkOpen(path);
    if (this.#handler !== undefined) {
      throw new ConfigError([{ path, expected: '', message: `the flow already has an error handler ('${this.#handler.name}')` }]);
    }
    this.#handler = {
      name: this.#checkName(name, `${path}.name`),
      op: this.#checkOperator(op, `${path}.op`, false) as StepOperator,
      before: [],
    };
    return this;
  }

  /**
   * Compiles the flow into one operator. Checks every rule of docs/design.md §17 (unknown `after` /
   * `before` / `cycleTo` targets, `before` upstream, loops without a bound) and throws `ConfigError`
   * naming the step; after it, the flow cannot change. Calling it again returns the same operator.
   */
  build(): OperatorFunction<ServingEvent, ServingEvent> {
    if (this.#built !== undefined) return this.#built;
    const decl: FlowDecl = { name: this.name, steps: this.#steps, handler: this.#handler, ...this.#paths };
    const runtime = new FlowRuntime(compile(decl));
    this.#graph?.[ATTACH_FLOW](runtime);
    // One chain from the entry to the responder runs without a record per input (linear.ts).
    const operator = (runtime.plan.linear ? runLinear : runFlow)(runtime.plan, runtime, this.#maxInFlight);
    Object.defineProperty(operator, FLOW_RUNTIME, { value: runtime });
    this.#built = operator;
    return operator;
  }

  #add(name: string, op: FlowStepOperator, options: FlowStepOptions, after: readonly string[]): FlowStep {
    const path = this.#paths.pathOf(String(name));
    this.#checkOpen(path);
    this.#checkName(name, path);
    this.#checkOperator(op, path, true);
    const decl: StepDecl = {
      name,
      op,
      after: Object.freeze([...after]),
      maxIterations: options.maxIterations,
      responder: false,
      cycleTo: [],
      handler: undefined,
    };
    this.#steps.push(decl);
    const handle = new FlowStep(this, decl, {
      path,
      checkOpen: () => this.#checkOpen(path),
      checkName: (n, p) => this.#checkName(n, p),
      checkOperator: (o, p) => this.#checkOperator(o, p, false) as StepOperator,
      responder: () => this.#steps.find((s) => s.responder),
    });
    this.#handles.set(name, handle);
    return handle;
  }

  #checkOpen(path: string): void {
    if (this.#built !== undefined) {
      throw new ConfigError([
        { path, expected: '', message: `flow '${this.name}' was built: build() makes it final (declare a new flow to change it)` },
      ]);
    }
  }

  #checkName(name: string, path: string): string {
    decodeOrThrow(NonEmptyString, name, path);
    const taken = this.#steps.some((s) => s.name === name || s.handler?.name === name) || this.#handler?.name === name;
    if (taken)
      throw new ConfigError([
        { path, expected: '', message: `'${name}' is already a step of the flow; names are unique among steps and handlers` },
      ]);
    return name;
  }

  #checkOperator(op: unknown, path: string, choiceAllowed: boolean): FlowStepOperator {
    if (typeof op === 'function' || (choiceAllowed && isChoice(op))) return op as FlowStepOperator;
    throw new ConfigError([
      {
        path,
        expected: choiceAllowed ? 'an operator (events$) => events$, or a choice()' : 'an operator (events$) => events$',
        actual: describeValue(op),
      },
    ]);
  }
}

/** What a step handle needs from its flow. */
interface StepOwner {
  readonly path: string;
  checkOpen(): void;
  checkName(name: string, path: string): string;
  checkOperator(op: unknown, path: string): StepOperator;
  responder(): StepDecl | undefined;
}

/** A step of a flow, as `to()` / `add()` / `flow.step()` return it. */
export class FlowStep {
  readonly #flow: Flow;
  readonly #decl: StepDecl;
  readonly #owner: StepOwner;

  /** @internal */
  constructor(owner: Flow, decl: StepDecl, internal: StepOwner) {
    this.#flow = owner;
    this.#decl = decl;
    this.#owner = internal;
  }

  get name(): string {
    return this.#decl.name;
  }

  /** Adds a step after this one; returns the new step's handle. */
  to(name: string, op: FlowStepOperator, options: FlowStepOptions = {}): FlowStep {
    return this.#flow.add(name, op, { ...decodeOrThrow(StepOptionsCodec, options, `${this.#owner.path}.to`), after: this.#decl.name });
  }

  /** Makes this step the responder: its output is the answer to each input event. One per flow. */
  respond(): this {
    this.#owner.checkOpen();
    const current = this.#owner.responder();
    if (current !== undefined && current !== this.#decl) {
      throw new ConfigError([
        { path: `${this.#owner.path}.respond`, expected: '', message: `'${current.name}' already responds; a flow has one responder` },
      ]);
    }
    this.#decl.responder = true;
    return this;
  }

  /**
   * Takes the events this step fails, with `error` cleared and `metadata.error = { step, error:
   * '<Name>: <message>' }` (MLRun's error handler). Its output goes on to the `before` steps
   * (downstream of this one); without `before` it ends the branch, and when this step is on the
   * responder's path it is the response (a fallback answer). Returns this step's handle.
   */
  errorHandler(name: string, op: OperatorFunction<ServingEvent, ServingEvent>, options: FlowErrorHandlerOptions = {}): this {
    const path = `${this.#owner.path}.errorHandler`;
    this.#owner.checkOpen();
    const { before } = decodeOrThrow(HandlerOptionsCodec, options, path);
    if (this.#decl.handler !== undefined) {
      throw new ConfigError([
        { path, expected: '', message: `step '${this.#decl.name}' already has an error handler ('${this.#decl.handler.name}')` },
      ]);
    }
    this.#decl.handler = {
      name: this.#owner.checkName(name, `${path}.name`),
      op: this.#owner.checkOperator(op, `${path}.op`),
      before: before === undefined ? [] : typeof before === 'string' ? [before] : [...before],
    };
    return this;
  }

  /**
   * Adds edges from this step back to upstream steps (MLRun's `cycle_to`). Every cycle needs a
   * bound: `maxIterations` on one of its steps, else `build()` throws. Returns this step's handle.
   */
  cycleTo(names: string | readonly string[]): this {
    const path = `${this.#owner.path}.cycleTo`;
    this.#owner.checkOpen();
    const list = decodeOrThrow(Names, names, path);
    for (const n of typeof list === 'string' ? [list] : list) if (!this.#decl.cycleTo.includes(n)) this.#decl.cycleTo.push(n);
    return this;
  }
}

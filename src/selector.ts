// Model selectors: which models of a step run for an event (MLRun's ModelSelector), and the registry.
import { ConfigError, SelectorError, toError } from './errors.js';
import type { ServingEvent } from './event.js';
import type { ModelEntry } from './model/entry.js';

/** What a selector may return: endpoint names, model entries, `null`/`undefined` for all models. */
export type SelectorResult = readonly (string | { readonly endpointName: string })[] | null | undefined;

/**
 * Picks the models that run for an event. Subclass it and override `select`; the default selects
 * every model. Constructor parameters come as one object (`selectorParams` when registered by name).
 *
 * ## Example
 * ```ts
 * import { ModelSelector, type ServingEvent } from 'rxserve';
 * class ByField extends ModelSelector {
 *   select(event: ServingEvent<{ models?: string[] }>) { return event.body.models ?? null; }
 * }
 * ```
 */
export class ModelSelector {
  /**
   * @param event The event being served.
   * @param availableModels The step's model entries, in registration order.
   * @returns Endpoint names (or entries) to run; `null`/`undefined` for all; `[]` for none.
   */
  select(event: ServingEvent, availableModels: readonly ModelEntry[]): SelectorResult {
    void event;
    void availableModels;
    return null;
  }
}

/** A selector as a plain function. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a user's function typed for its own body must be assignable (unknown would refuse it)
export type SelectorFn = (event: ServingEvent<any>, availableModels: readonly ModelEntry[]) => SelectorResult;

/** A selector class, constructed with its parameters object. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a class whose constructor takes its own params type must be assignable
export type ModelSelectorClass = new (params: any) => ModelSelector;

/** Anything a step accepts as its selector: an instance, a function, or a registered name. */
export type SelectorLike = ModelSelector | SelectorFn | string;

const selectors = new Map<string, ModelSelectorClass>();

/**
 * Registers a selector class under a name, so steps can name it (`selector: 'MyClassifier'`,
 * with `selectorParams` passed to its constructor).
 */
export function registerSelector(name: string, selectorClass: ModelSelectorClass, options: { override?: boolean } = {}): void {
  if (typeof name !== 'string' || name.length === 0) {
    throw new ConfigError([{ path: 'registerSelector.name', expected: 'a non-empty string', actual: String(name) }]);
  }
  if (typeof selectorClass !== 'function') {
    throw new ConfigError([{ path: 'registerSelector.selectorClass', expected: 'a ModelSelector class', actual: typeof selectorClass }]);
  }
  const existing = selectors.get(name);
  if (existing !== undefined && existing !== selectorClass && !options.override) {
    throw new ConfigError(`selector '${name}' is already registered; pass { override: true } to replace it`);
  }
  selectors.set(name, selectorClass);
}

/** Removes a selector registration; returns whether there was one. */
export function unregisterSelector(name: string): boolean {
  return selectors.delete(name);
}

/** True for what a step accepts as a selector (checked at configuration). */
export function isSelectorLike(value: unknown): value is SelectorLike {
  return (
    typeof value === 'function' ||
    (typeof value === 'string' && value.length > 0) ||
    (typeof value === 'object' && value !== null && typeof (value as ModelSelector).select === 'function')
  );
}

/** A function form of any selector; names are looked up (and their class constructed) now. */
export function resolveSelector(
  selector: SelectorLike | undefined,
  params: Readonly<Record<string, unknown>> | undefined,
  path: string,
): SelectorFn | undefined {
  if (selector === undefined) return undefined;
  if (typeof selector === 'string') {
    const cls = selectors.get(selector);
    if (cls === undefined) {
      throw new ConfigError([
        {
          path,
          expected: `a registered selector (registered: ${[...selectors.keys()].join(', ') || 'none'})`,
          actual: `'${selector}'`,
        },
      ]);
    }
    const instance = construct(cls, params, path);
    return (event, available) => instance.select(event, available);
  }
  if (typeof selector === 'function') {
    // A class given where an instance or function was expected: construct it, as a name would be.
    if (/^class[\s{]/.test(Function.prototype.toString.call(selector))) {
      const instance = construct(selector as unknown as ModelSelectorClass, params, path);
      return (event, available) => instance.select(event, available);
    }
    refuseParams('a selector function', params, path);
    return selector;
  }
  refuseParams(`a selector object (${selector.constructor?.name || 'Object'})`, params, path);
  return (event, available) => selector.select(event, available);
}

/**
 * `selectorParams` are constructor parameters, for a selector given by name or as a class. With
 * an object (built already) or a function they would be silently ignored; MLRun refuses a
 * selector object with parameters too (`MLRunInvalidArgumentError`).
 */
function refuseParams(what: string, params: Readonly<Record<string, unknown>> | undefined, path: string): void {
  if (params === undefined) return;
  throw new ConfigError([
    {
      path: `${path}Params`,
      expected:
        `no ${path}Params when ${path} is ${what}: they are constructor parameters, for a selector given by ` +
        `registered name or as a class (build the object with them, or pass its class)`,
      actual: `{ ${Object.keys(params).join(', ')} }`,
    },
  ]);
}

/** A selector class built with its params; a constructor that throws is a ConfigError naming it. */
function construct(cls: ModelSelectorClass, params: Readonly<Record<string, unknown>> | undefined, path: string): ModelSelector {
  try {
    return new cls({ ...params });
  } catch (thrown) {
    const cause = toError(thrown);
    throw new ConfigError(
      [
        {
          path,
          expected: `a selector that can be built from selectorParams`,
          actual: `selector class ${cls.name || '(anonymous)'} could not be constructed: ${cause.name}: ${cause.message}`,
        },
      ],
      { cause },
    );
  }
}

/** The outcome of selection for one event: the endpoint names to run, in the selector's order. */
export type SelectOutcome = readonly string[] | SelectorError;

/**
 * Builds the per-event selection function of a step: runs the selector and checks its answer
 * (an array of known, distinct names or entries; `null`/`undefined` for all).
 */
export function createSelect(
  selector: SelectorFn | undefined,
  models: readonly ModelEntry[],
  step: string,
): (event: ServingEvent) => SelectOutcome {
  // Readonly by type only: V8 on Node 20 reads a frozen array's elements through its generic
  // keyed-load stub (~70 instructions a load), and the runner reads this list once per event.
  const all: readonly string[] = models.map((m) => m.endpointName);
  if (selector === undefined) return () => all;
  const known = new Set(all);
  return (event) => {
    let result: SelectorResult;
    try {
      result = selector(event, models);
    } catch (thrown) {
      const cause = toError(thrown);
      return new SelectorError(`step '${step}': the selector threw ${cause.name}: ${cause.message}`, { cause });
    }
    if (result === null || result === undefined) return all;
    if (typeof (result as unknown as PromiseLike<unknown>).then === 'function') {
      return new SelectorError(
        `step '${step}': the selector returned a Promise; selectors are synchronous (decide from the event, or do the async work in a step before)`,
      );
    }
    if (!Array.isArray(result)) {
      return new SelectorError(
        `step '${step}': the selector returned ${typeof result}; expected an array of endpoint names, null or undefined`,
      );
    }
    const names: string[] = new Array<string>(result.length);
    const seen = new Set<string>();
    for (let i = 0; i < result.length; i++) {
      const item: unknown = result[i];
      const name = typeof item === 'string' ? item : (item as { endpointName?: unknown } | null)?.endpointName;
      if (typeof name !== 'string') {
        return new SelectorError(
          `step '${step}': the selector returned ${JSON.stringify(item)} at [${i}]; expected an endpoint name or a model entry`,
        );
      }
      if (!known.has(name)) {
        return new SelectorError(
          `step '${step}': the selector chose '${name}', which is not a model of the step (models: ${all.join(', ')})`,
        );
      }
      if (seen.has(name)) {
        return new SelectorError(`step '${step}': the selector chose '${name}' more than once`);
      }
      seen.add(name);
      names[i] = name;
    }
    return names;
  };
}

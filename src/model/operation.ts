// The V2 operations of a model call (docs/design.md §18): which method of the model a call's operation runs.
import type { Model, PredictContext } from './model.js';

/** Operations answered without a model method of their own name (`infer`/`predict` run `predict`). */
const BUILT_IN = ['infer', 'predict', 'explain', 'metadata', 'ready'] as const;

/** A custom operation's name: what may follow `op_` in a method name. */
const OPERATION_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** True for a name that can be an operation (`explain`, `hello`): letters, digits and `_`, not starting with a digit. */
export function isOperationName(name: string): boolean {
  return OPERATION_NAME.test(name);
}

/**
 * The operation of a call, as a call carries it: `undefined` for `infer` and `predict` (the
 * model's `predict`), else the name itself.
 */
export function callOperation(operation: unknown): string | undefined {
  return typeof operation !== 'string' || operation === '' || operation === 'infer' || operation === 'predict' ? undefined : operation;
}

/**
 * Runs a call's operation on a model: `predict` (no operation), `explain()`, `metadata()`, or the
 * custom operation `op_<name>(body, ctx)`. A model without the method fails the call with a
 * `TypeError` naming the operation and listing the ones the model has.
 */
export function runOperation(model: Model, body: unknown, ctx: PredictContext): unknown {
  const operation = ctx.operation;
  if (operation === undefined) return model.predict(body, ctx);
  if (operation === 'explain') {
    if (typeof model.explain !== 'function') {
      throw new TypeError(
        `model '${model.name}' has no explain() method, so it cannot answer 'explain'; its operations: ${operationsOf(model).join(', ')}`,
      );
    }
    return model.explain(body, ctx);
  }
  if (operation === 'metadata') return typeof model.metadata === 'function' ? model.metadata() : {};
  const method = `op_${operation}`;
  const fn = isOperationName(operation) ? (model as unknown as Record<string, unknown>)[method] : undefined;
  if (typeof fn !== 'function') {
    throw new TypeError(
      `model '${model.name}' has no operation '${operation}' (a method ${method}(body, ctx)); its operations: ${operationsOf(model).join(', ')}`,
    );
  }
  return (fn as (body: unknown, ctx: PredictContext) => unknown).call(model, body, ctx);
}

/** The operations a model answers: the built-in ones it has, then its `op_*` methods (own and inherited). */
export function operationsOf(model: Model): string[] {
  const names = BUILT_IN.filter((op) => op !== 'explain' || typeof model.explain === 'function') as string[];
  const custom = new Set<string>();
  for (
    let proto: object | null = model;
    proto !== null && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto) as object | null
  ) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (key.startsWith('op_') && key.length > 3 && typeof (model as unknown as Record<string, unknown>)[key] === 'function')
        custom.add(key.slice(3));
    }
  }
  return [...names, ...custom];
}

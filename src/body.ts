// What every edge (HTTP, Redis, invoker) checks of a request body before a step sees it: its
// nesting depth and prototype-poisoning keys. One iterative walk: nothing here recurses, so a
// body built to exhaust the stack cannot.

/** How deep a request body may nest by default (docs/design.md §11: `maxBodyDepth`). */
export const DEFAULT_MAX_BODY_DEPTH = 256;

const DEPTH_PROBLEM = 'body is nested deeper than';

/** True when `bodyProblem`'s answer is about depth (not a prototype-poisoning key). */
export function isDepthProblem(problem: string): boolean {
  return problem.startsWith(DEPTH_PROBLEM);
}

/** Options of `bodyProblem`. */
export interface BodyCheck {
  /** Deepest nesting allowed: a bare value is depth 0, `{ a: 1 }` depth 1. Default 256. */
  readonly maxDepth?: number;
  /** Also refuse `__proto__` keys and `constructor.prototype` (JSON parsed without fastify's guard). */
  readonly protoKeys?: boolean;
}

/**
 * Why a body may not enter a pipeline, or `undefined` when it may: nested deeper than `maxDepth`
 * (`'body is nested deeper than 256 levels (at body.a.a.a…)'`), or, with `protoKeys`, a key that
 * would replace a prototype. Arrays of primitives (tensor data) cost one pass with no allocation.
 */
export function bodyProblem(body: unknown, check?: BodyCheck): string | undefined {
  if (body === null || typeof body !== 'object') return undefined;
  const maxDepth = check?.maxDepth ?? DEFAULT_MAX_BODY_DEPTH;
  const protoKeys = check?.protoKeys ?? false;
  // The common body (small, shallow) passes a walk that allocates nothing; a body it cannot clear
  // (deep, large, with cycles or shared parts, a key named `__proto__` or `constructor`, or
  // refused: the walk below names where) goes on.
  quickBudget = QUICK_NODES;
  if (quickFits(body, 1, Math.min(maxDepth, QUICK_DEPTH), protoKeys)) return undefined;
  // Depth-first with an explicit stack of [value, depth, parent index, key]; the parents make the
  // path of a refused value without building one for every node.
  const values: object[] = [body];
  const depths: number[] = [1];
  const parents: number[] = [-1];
  const keys: string[] = [''];
  const seen = new Set<object>();
  let top = 0;
  const visited: { value: object; depth: number; parent: number; key: string }[] = [];
  while (top >= 0) {
    const value = values[top];
    const depth = depths[top];
    const parent = parents[top];
    const key = keys[top];
    top--;
    if (seen.has(value)) continue;
    seen.add(value);
    const index = visited.push({ value, depth, parent, key }) - 1;
    if (depth > maxDepth) return `${DEPTH_PROBLEM} ${maxDepth} levels (at ${pathAt(visited, index)})`;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const item: unknown = value[i];
        if (item === null || typeof item !== 'object') continue;
        push(item, depth + 1, index, `[${i}]`);
      }
    } else if (!ArrayBuffer.isView(value) && !(value instanceof ArrayBuffer)) {
      for (const name of Object.keys(value)) {
        if (protoKeys && name === '__proto__') return `body has a '__proto__' key (at ${pathAt(visited, index, `.__proto__`)})`;
        const item: unknown = (value as Record<string, unknown>)[name];
        if (protoKeys && name === 'constructor' && item !== null && typeof item === 'object' && Object.hasOwn(item, 'prototype')) {
          return `body has a 'constructor.prototype' key (at ${pathAt(visited, index, '.constructor.prototype')})`;
        }
        if (item === null || typeof item !== 'object') continue;
        push(item, depth + 1, index, `.${name}`);
      }
    }
  }
  return undefined;

  function push(item: object, depth: number, parent: number, key: string): void {
    top++;
    values[top] = item;
    depths[top] = depth;
    parents[top] = parent;
    keys[top] = key;
  }
}

/**
 * `bodyProblem(value, { maxDepth, protoKeys: true })` for the value `JSON.parse` made of `text`,
 * with what the text already tells: a text shorter than `2 × (maxDepth + 1)` characters cannot
 * nest deeper than `maxDepth` (each level takes a bracket pair), and one without `__proto__`,
 * `constructor` or a backslash (an escape could spell them) has neither key. So the common body
 * (short, plain) is not walked at all, and a long one is walked for depth only unless its text
 * names such a key.
 */
export function jsonTextProblem(text: string, value: unknown, maxDepth = DEFAULT_MAX_BODY_DEPTH): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const protoKeys = text.includes('__proto__') || text.includes('constructor') || text.includes('\\');
  if (!protoKeys && text.length < 2 * (maxDepth + 1)) return undefined;
  return bodyProblem(value, { maxDepth, protoKeys });
}

/** How deep the allocation-free walk goes (recursively: so bounded) before leaving the body to the full walk. */
const QUICK_DEPTH = 32;
/** How many objects it visits before leaving the body to the full walk (a subtree shared by many parents is visited once per path to it). */
const QUICK_NODES = 512;
let quickBudget = 0;

/**
 * True when `value` (at `depth`) and everything under it nest no deeper than `limit`, within the
 * node budget, and (with `protoKeys`) have no key named `__proto__` or `constructor` (the full
 * walk judges those: a `constructor` key is refused only over a `prototype`).
 */
function quickFits(value: object, depth: number, limit: number, protoKeys: boolean): boolean {
  if (depth > limit || --quickBudget < 0) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (item !== null && typeof item === 'object' && !quickFits(item, depth + 1, limit, protoKeys)) return false;
    }
    return true;
  }
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return true;
  // The own enumerable keys, as the full walk's Object.keys, without its array.
  for (const name in value) {
    if (!Object.hasOwn(value, name)) continue;
    if (protoKeys && (name === '__proto__' || name === 'constructor')) return false;
    const item: unknown = (value as Record<string, unknown>)[name];
    if (item !== null && typeof item === 'object' && !quickFits(item, depth + 1, limit, protoKeys)) return false;
  }
  return true;
}

function pathAt(visited: readonly { parent: number; key: string }[], index: number, tail?: string): string {
  const parts: string[] = tail === undefined ? [] : [tail];
  for (let i = index; i > 0; i = visited[i].parent) parts.push(visited[i].key);
  let path = 'body';
  for (let j = parts.length - 1; j >= 0; j--) {
    path += parts[j];
    if (path.length > 200) return `${path.slice(0, 200)}…`;
  }
  return path;
}

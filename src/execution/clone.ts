// Deep copies of request bodies: each model gets its own copy of its input (docs/design.md §1.7).
import { inspectForWorker } from './wire/protocol.js';

/**
 * Deep-copies a body. Plain objects, arrays and primitives (the JSON-shaped bodies that are the
 * common case) are copied by a hand-written walk, several times faster than `structuredClone` for
 * small bodies; anything else (Date, Map, TypedArray, class instances, ...) goes through
 * `structuredClone`, which throws `DataCloneError` for what cannot be copied (functions).
 */
export function cloneBody<T>(value: T): T {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'function') {
      throw new TypeError('cannot copy the model input: input is a function');
    }
    return value;
  }
  try {
    return clonePlain(value, undefined, 0) as T;
  } catch (error) {
    // The slow path, once: say where the value that cannot be copied is.
    const problem = inspectForWorker(value, 'input').problem;
    if (problem === undefined) throw error;
    throw new TypeError(`cannot copy the model input: ${problem}, which structured clone cannot copy`, { cause: error });
  }
}

/**
 * Copies plain objects and arrays by hand. `seen` maps what was copied to its copy, so a cycle or
 * a shared reference is copied once and stays a cycle or a shared reference (as structuredClone
 * does); a walk that ignored them would loop, or copy a shared subtree once per path to it. The
 * map is made at the first nested object, so a flat body (the common case) never allocates one.
 * Past `RECURSION_LIMIT` levels the copy goes on without recursion (`cloneDeep`), so a body built
 * to exhaust the stack cannot (docs/design.md §11); the recursive walk stays for the common, shallow case.
 */
/** The map of copies, made at the first nested object: `set` on an empty map (a `new Map([[k, v]])` walks an iterator over a new array). */
function seenMap(value: object, copy: unknown): Map<object, unknown> {
  return new Map<object, unknown>().set(value, copy);
}

function clonePlain(value: object, seen: Map<object, unknown> | undefined, depth: number): unknown {
  const copied = seen?.get(value);
  if (copied !== undefined) return copied;
  if (depth > RECURSION_LIMIT) return cloneDeep(value, (seen ??= new Map<object, unknown>()));
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    seen?.set(value, out);
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      out[i] = item !== null && typeof item === 'object' ? clonePlain(item, (seen ??= seenMap(value, out)), depth + 1) : checkLeaf(item);
    }
    return out;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    const out = structuredClone(value);
    seen?.set(value, out);
    return out;
  }
  const out: Record<string, unknown> = {};
  seen?.set(value, out);
  for (const key in value) {
    const item = (value as Record<string, unknown>)[key];
    out[key] = item !== null && typeof item === 'object' ? clonePlain(item, (seen ??= seenMap(value, out)), depth + 1) : checkLeaf(item);
  }
  return out;
}

function checkLeaf(item: unknown): unknown {
  if (typeof item === 'function') throw new TypeError('a function cannot be copied');
  return item;
}

const RECURSION_LIMIT = 64;

/** `clonePlain` with an explicit stack of (source, copy) pairs whose members are still to copy. */
function cloneDeep(root: object, seen: Map<object, unknown>): unknown {
  const stack: object[] = [];
  const copyOf = (value: object): unknown => {
    const copied = seen.get(value);
    if (copied !== undefined) return copied;
    const proto: unknown = Object.getPrototypeOf(value);
    if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) {
      const out = structuredClone(value);
      seen.set(value, out);
      return out;
    }
    const out: object = Array.isArray(value) ? new Array(value.length) : {};
    seen.set(value, out);
    stack.push(value, out);
    return out;
  };
  const rootCopy = copyOf(root);
  while (stack.length > 0) {
    const target = stack.pop() as Record<string | number, unknown>;
    const source = stack.pop()!;
    if (Array.isArray(source)) {
      for (let i = 0; i < source.length; i++) {
        const item: unknown = source[i];
        target[i] = item !== null && typeof item === 'object' ? copyOf(item) : checkLeaf(item);
      }
    } else {
      for (const key in source) {
        const item = (source as Record<string, unknown>)[key];
        target[key] = item !== null && typeof item === 'object' ? copyOf(item) : checkLeaf(item);
      }
    }
  }
  return rootCopy;
}

// Deep copies of request bodies: each model gets its own copy of its input (DESIGN §1.7).

/**
 * Deep-copies a body. Plain objects, arrays and primitives (the JSON-shaped bodies that are the
 * common case) are copied by a hand-written walk, several times faster than `structuredClone` for
 * small bodies; anything else (Date, Map, TypedArray, class instances, ...) goes through
 * `structuredClone`, which throws `DataCloneError` for what cannot be copied (functions).
 */
export function cloneBody<T>(value: T): T {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'function') {
      throw new TypeError('cannot copy a function as a model input');
    }
    return value;
  }
  return clonePlain(value, 0) as T;
}

const MAX_HAND_DEPTH = 64;

function clonePlain(value: object, depth: number): unknown {
  if (depth > MAX_HAND_DEPTH) return structuredClone(value); // deep or cyclic: let the platform decide
  if (Array.isArray(value)) {
    const out = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      out[i] = item !== null && typeof item === 'object' ? clonePlain(item, depth + 1) : checkLeaf(item);
    }
    return out;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return structuredClone(value);
  const out: Record<string, unknown> = {};
  for (const key in value) {
    const item = (value as Record<string, unknown>)[key];
    out[key] = item !== null && typeof item === 'object' ? clonePlain(item, depth + 1) : checkLeaf(item);
  }
  return out;
}

function checkLeaf(item: unknown): unknown {
  if (typeof item === 'function') throw new TypeError('cannot copy a function inside a model input');
  return item;
}

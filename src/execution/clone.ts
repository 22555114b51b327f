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
  const sharedWasFree = !sharedInUse;
  try {
    return clonePlain(value, undefined, 0) as T;
  } catch (error) {
    // The slow path, once: say where the value that cannot be copied is.
    const problem = inspectForWorker(value, 'input').problem;
    if (problem === undefined) throw error;
    throw new TypeError(`cannot copy the model input: ${problem}, which structured clone cannot copy`, { cause: error });
  } finally {
    // This walk took the shared table: it is free again, and holds nothing of this body.
    if (sharedWasFree && sharedInUse) {
      SHARED.reset();
      sharedInUse = false;
    }
  }
}

/**
 * Copies plain objects and arrays by hand. `seen` maps what was copied to its copy, so a cycle or
 * a shared reference is copied once and stays a cycle or a shared reference (as structuredClone
 * does); a walk that ignored them would loop, or copy a shared subtree once per path to it. The
 * table is taken at the first nested object, so a flat body (the common case) never touches one.
 * Past `RECURSION_LIMIT` levels the copy goes on without recursion (`cloneDeep`), so a body built
 * to exhaust the stack cannot (docs/design.md §11); the recursive walk stays for the common, shallow case.
 */
/**
 * What a walk copied so far (source → copy): up to `SMALL` pairs in two arrays searched by
 * identity, a Map past that. A nested body (the bench's `{ tags: [...] }`) made a Map per copy,
 * its table included: one table is kept instead (`SHARED`), lent to a walk at a time and emptied
 * after it.
 */
class Seen {
  private readonly from: (object | undefined)[] = new Array<object | undefined>(SMALL).fill(undefined);
  private readonly to: unknown[] = new Array<unknown>(SMALL).fill(undefined);
  private count = 0;
  private map: Map<object, unknown> | undefined = undefined;

  get(value: object): unknown {
    if (this.map !== undefined) return this.map.get(value);
    const at = this.from.indexOf(value);
    return at < 0 || at >= this.count ? undefined : this.to[at];
  }

  set(value: object, copy: unknown): void {
    if (this.map !== undefined) {
      this.map.set(value, copy);
      return;
    }
    if (this.count < SMALL) {
      this.from[this.count] = value;
      this.to[this.count++] = copy;
      return;
    }
    this.map = new Map<object, unknown>();
    for (let i = 0; i < this.count; i++) this.map.set(this.from[i]!, this.to[i]);
    this.map.set(value, copy);
  }

  /** Forgets every pair (the arrays keep their length: no new backing store next time). */
  reset(): void {
    for (let i = 0; i < this.count; i++) this.from[i] = this.to[i] = undefined;
    this.count = 0;
    this.map = undefined;
  }
}

const SMALL = 16;
const SHARED = new Seen();
/** A walk holds SHARED (one that starts inside it, from a getter, makes its own table). */
let sharedInUse = false;

/** The table of copies, taken at the first nested object, with the pair that led to it. */
function seenFrom(value?: object, copy?: unknown): Seen {
  let seen: Seen;
  if (sharedInUse) seen = new Seen();
  else {
    sharedInUse = true;
    seen = SHARED;
  }
  if (value !== undefined) seen.set(value, copy);
  return seen;
}

function clonePlain(value: object, seen: Seen | undefined, depth: number): unknown {
  const copied = seen?.get(value);
  if (copied !== undefined) return copied;
  if (depth > RECURSION_LIMIT) return cloneDeep(value, (seen ??= seenFrom()));
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    seen?.set(value, out);
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      out[i] = item !== null && typeof item === 'object' ? clonePlain(item, (seen ??= seenFrom(value, out)), depth + 1) : checkLeaf(item);
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
    out[key] = item !== null && typeof item === 'object' ? clonePlain(item, (seen ??= seenFrom(value, out)), depth + 1) : checkLeaf(item);
  }
  return out;
}

function checkLeaf(item: unknown): unknown {
  if (typeof item === 'function') throw new TypeError('a function cannot be copied');
  return item;
}

const RECURSION_LIMIT = 64;

/** `clonePlain` with an explicit stack of (source, copy) pairs whose members are still to copy. */
function cloneDeep(root: object, seen: Seen): unknown {
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

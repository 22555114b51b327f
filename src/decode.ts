// The one place io-ts is used directly: codecs decode config objects or throw ConfigError.
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either.js';
import { ConfigError, type ConfigIssue } from './errors.js';

/**
 * Decodes `value` with `codec`, or throws `ConfigError` naming every failing field from `root`
 * (`modelRunner.models[1].executionMechanism`), what it expected and what it got. Object codecs
 * made with `strict()` also reject unknown keys, so a typo is not silently ignored.
 */
export function decodeOrThrow<A, O>(codec: t.Type<A, O, unknown>, value: unknown, root: string): A {
  const result = codec.decode(value);
  if (isLeft(result)) throw new ConfigError(toIssues(result.left, root));
  return result.right;
}

function toIssues(errors: t.Errors, root: string): ConfigIssue[] {
  const byPath = new Map<string, ConfigIssue>();
  for (const error of errors) {
    const issue = toIssue(error, root);
    if (!byPath.has(issue.path)) byPath.set(issue.path, issue);
  }
  return [...byPath.values()];
}

// A union reports each member's failure; the user wants one line at the union's own path
// saying what the union accepts, so the walk stops at the first union it meets.
function toIssue(error: t.ValidationError, root: string): ConfigIssue {
  let path = root;
  const entries = error.context;
  for (let i = 1; i < entries.length; i++) {
    const parent = entries[i - 1];
    if (parent.type instanceof t.UnionType) {
      return { path, expected: parent.type.name, actual: describeValue(parent.actual) };
    }
    const key = entries[i].key;
    if (key === '') continue;
    path += isArrayLike(parent.type) ? `[${key}]` : `.${key}`;
  }
  const last = entries[entries.length - 1];
  if (error.message) return { path, expected: '', message: error.message };
  return { path, expected: last.type.name, actual: describeValue(error.value) };
}

function isArrayLike(type: t.Decoder<unknown, unknown>): boolean {
  return type instanceof t.ArrayType || type instanceof t.ReadonlyArrayType;
}

/**
 * `" (did you mean 'chat'?)"` when one of `known` is a likely typo of `name` (same letters up to
 * case, or an edit distance of at most a third of its length), else `''`. For ConfigError texts
 * about names the library knows (endpoints, classes, routes).
 */
export function didYouMean(name: string, known: Iterable<string>): string {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const candidate of known) {
    const distance = candidate.toLowerCase() === name.toLowerCase() ? 0 : editDistance(name, candidate, bestDistance);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best === undefined || best === name ? '' : ` (did you mean '${best}'?)`;
}

/** Levenshtein distance, or `limit` as soon as it is known to be at least that (names are short). */
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) >= limit) return limit;
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      rowMin = Math.min(rowMin, current[j]);
    }
    if (rowMin >= limit) return limit;
    previous = current;
  }
  return Math.min(previous[b.length], limit);
}

export function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  // A value is shown in part: an error that echoed a 2 MB value whole would bury what it says.
  if (typeof value === 'string')
    return value.length > 200 ? `${JSON.stringify(value.slice(0, 200))}… (${value.length} characters)` : JSON.stringify(value);
  try {
    const text = JSON.stringify(value);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * A codec for a value that passes `test`, named `expected` in errors: every leaf codec that is a
 * plain test (ports, strings, functions, instances) is made with it.
 */
export function guard<T>(expected: string, test: (u: unknown) => boolean): t.Type<T, T, unknown> {
  return new t.Type<T, T, unknown>(
    expected,
    (u): u is T => test(u),
    (u, c) => (test(u) ? t.success(u as T) : t.failure(u, c)),
    t.identity,
  );
}

/** What `strict()` makes: an object codec that keeps its fields, so a JSON Schema can be derived from it. */
export class StrictType<A, R extends t.Props = t.Props, O extends t.Props = t.Props> extends t.Type<A, unknown, unknown> {
  readonly _tag = 'StrictType' as const;
  constructor(
    readonly required: R,
    readonly optional: O,
    ...args: ConstructorParameters<typeof t.Type<A, unknown, unknown>>
  ) {
    super(...args);
  }
}

/**
 * An object codec that also fails on keys it does not know, naming them. Required fields come
 * from `required`, optional ones from `optional`.
 */
export function strict<R extends t.Props, O extends t.Props>(
  name: string,
  required: R,
  optional: O,
): StrictType<t.TypeOf<t.TypeC<R>> & t.TypeOf<t.PartialC<O>>, R, O> {
  type A = t.TypeOf<t.TypeC<R>> & t.TypeOf<t.PartialC<O>>;
  const known = new Set([...Object.keys(required), ...Object.keys(optional)]);
  const requiredCodec = t.type(required);
  const optionalCodec = t.partial(optional);
  return new StrictType<A, R, O>(
    required,
    optional,
    name,
    (u): u is A => requiredCodec.is(u) && optionalCodec.is(u),
    (u, c) => {
      if (u === null || typeof u !== 'object' || Array.isArray(u)) return t.failure(u, c);
      const record = u as Record<string, unknown>;
      const errors: t.ValidationError[] = Object.keys(record)
        .filter((k) => !known.has(k))
        .map((k) => ({
          value: record[k],
          context: [...c, { key: k, type: t.never, actual: record[k] }],
          message: `unknown field '${k}' (known fields: ${[...known].join(', ')})`,
        }));
      // Both halves validate against the same context, so paths carry no intersection index.
      for (const codec of [requiredCodec, optionalCodec] as t.Decoder<unknown, unknown>[]) {
        const result = codec.validate(u, c);
        if (isLeft(result)) errors.push(...result.left);
      }
      return errors.length > 0 ? t.failures(errors) : t.success(u as A);
    },
    t.identity,
  );
}

/** A JSON Schema object (draft 2020-12). */
export type JsonSchema = { readonly [key: string]: unknown };

/**
 * A codec's JSON Schema where io-ts cannot describe it (guards, refinements written as plain
 * t.Type): the schema itself, or, for codecs that wrap others, a function of the walker.
 */
export type SchemaAnnotation = JsonSchema | ((walk: (codec: t.Mixed) => JsonSchema) => JsonSchema);
const annotations = new WeakMap<t.Mixed, SchemaAnnotation>();

/**
 * Gives a codec that is not made of io-ts combinators its JSON Schema (read by the spec's
 * `toJsonSchema`); returns the codec. Leaves are annotated once, where they are defined.
 */
export function annotate<C extends t.Mixed>(codec: C, schema: SchemaAnnotation): C {
  annotations.set(codec, schema);
  return codec;
}

/** The JSON Schema `annotate()` gave `codec`, if any. */
export function annotationOf(codec: t.Mixed): SchemaAnnotation | undefined {
  return annotations.get(codec);
}

const isPositiveInt = (u: unknown, allowInfinity: boolean): u is number =>
  typeof u === 'number' && ((Number.isInteger(u) && u > 0) || (allowInfinity && u === Infinity));
const isNonNegativeInt = (u: unknown, allowInfinity: boolean): u is number =>
  typeof u === 'number' && ((Number.isInteger(u) && u >= 0) || (allowInfinity && u === Infinity));

// One codec of each: the `Infinity` forms have no JSON Schema (JSON has no Infinity).
const POSITIVE_INT = annotate(
  guard<number>('a positive integer', (u): u is number => isPositiveInt(u, false)),
  { type: 'integer', minimum: 1 },
);
const POSITIVE_INT_OR_INFINITY = guard<number>('a positive integer or Infinity', (u): u is number => isPositiveInt(u, true));
const NON_NEGATIVE_INT = annotate(
  guard<number>('a non-negative integer', (u): u is number => isNonNegativeInt(u, false)),
  { type: 'integer', minimum: 0 },
);
const NON_NEGATIVE_INT_OR_INFINITY = guard<number>('a non-negative integer or Infinity', (u): u is number => isNonNegativeInt(u, true));

/** A positive integer, or `Infinity` where `allowInfinity`. */
export function positiveInt(allowInfinity = false): t.Type<number, number, unknown> {
  return allowInfinity ? POSITIVE_INT_OR_INFINITY : POSITIVE_INT;
}

/** A non-negative integer, or `Infinity` where `allowInfinity`. */
export function nonNegativeInt(allowInfinity = false): t.Type<number, number, unknown> {
  return allowInfinity ? NON_NEGATIVE_INT_OR_INFINITY : NON_NEGATIVE_INT;
}

/** The same codec without `Infinity`: `positiveInt(true)` → `positiveInt()`, `nonNegativeInt(true)` → `nonNegativeInt()`; any other codec as is. */
export function finite<C extends t.Mixed>(codec: C): C | t.Type<number, number, unknown> {
  if (codec === POSITIVE_INT_OR_INFINITY) return POSITIVE_INT;
  if (codec === NON_NEGATIVE_INT_OR_INFINITY) return NON_NEGATIVE_INT;
  return codec;
}

/** A TCP port: 0 to 65535 (0 picks a free port). */
export const Port = annotate(
  guard<number>(
    'a port number (0 to 65535; 0 picks a free port)',
    (u): u is number => typeof u === 'number' && Number.isInteger(u) && u >= 0 && u <= 65535,
  ),
  { type: 'integer', minimum: 0, maximum: 65535 },
);

/** A positive, finite number of milliseconds. */
export const PositiveMs = annotate(
  guard<number>('a positive number of milliseconds', (u): u is number => typeof u === 'number' && u > 0 && Number.isFinite(u)),
  { type: 'number', exclusiveMinimum: 0 },
);

/** A non-negative, finite number of milliseconds. */
export const NonNegativeMs = annotate(
  guard<number>('a non-negative number of milliseconds', (u): u is number => typeof u === 'number' && u >= 0 && Number.isFinite(u)),
  { type: 'number', minimum: 0 },
);

/** A function (any arity), e.g. a model class or a selector function. */
export function fn<F extends ((...args: never[]) => unknown) | (abstract new (...args: never[]) => unknown)>(
  name: string,
): t.Type<F, F, unknown> {
  return guard<F>(name, (u) => typeof u === 'function');
}

/** A non-empty string. */
export const NonEmptyString = annotate(
  guard<string>('a non-empty string', (u) => typeof u === 'string' && u.length > 0),
  { type: 'string', minLength: 1 },
);

/** A dot path (`'a.b.c'`): non-empty segments separated by dots. */
export const DotPath = annotate(
  guard<string>("a dot path like 'a.b.c'", (u) => typeof u === 'string' && u.split('.').every((s) => s.length > 0)),
  { type: 'string', pattern: '^[^.]+(\\.[^.]+)*$', description: "a dot path like 'a.b.c'" },
);

/**
 * The path of the first value JSON would not carry as is (a function, a class instance, a
 * non-finite number, `undefined` inside, a cycle), or `undefined`. Workers receive params and
 * artifacts as JSON.
 */
export function firstNonJson(value: unknown, path: string, ancestors: Set<object> = new Set()): string | undefined {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : path;
  if (value === undefined) return ancestors.size === 0 ? undefined : path;
  if (typeof value !== 'object') return path;
  if (ancestors.has(value)) return path; // a cycle
  const proto: unknown = Object.getPrototypeOf(value);
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return path;
  ancestors.add(value);
  try {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const bad = firstNonJson(value[i], `${path}[${i}]`, ancestors);
        if (bad) return bad;
      }
      return undefined;
    }
    for (const [key, item] of Object.entries(value)) {
      const bad = firstNonJson(item, `${path}.${key}`, ancestors);
      if (bad) return bad;
    }
    return undefined;
  } finally {
    ancestors.delete(value);
  }
}

/** The fields `keys` of an object codec's props (to build one codec from another's fields). */
export function pickProps<P extends t.Props, K extends keyof P>(props: P, ...keys: K[]): Pick<P, K> {
  return Object.fromEntries(keys.map((k) => [k, props[k]])) as Pick<P, K>;
}

/** An object codec's props but `keys`. */
export function omitProps<P extends t.Props, K extends keyof P>(props: P, ...keys: K[]): Omit<P, K> {
  return Object.fromEntries(Object.entries(props).filter(([k]) => !keys.includes(k as K))) as Omit<P, K>;
}

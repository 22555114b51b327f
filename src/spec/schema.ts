// A JSON Schema (draft 2020-12) derived from io-ts codecs, so the spec's shape is written once.
import * as t from 'io-ts';
import { StrictType, annotate, annotationOf, type JsonSchema } from '../decode.js';

// The annotations of codecs io-ts cannot describe live with the codecs (decode.ts `annotate`).
export { annotate, type JsonSchema };

/**
 * The JSON Schema of `codec`: walks t.type / t.partial / t.intersection / t.union / t.keyof /
 * t.array / t.record / t.literal / t.recursion and `strict()` objects (no other keys allowed);
 * any other codec needs `annotate()`, or this throws naming it.
 */
export function toJsonSchema(codec: t.Mixed, root: { $id?: string; title?: string; description?: string } = {}): JsonSchema {
  const defs: Record<string, JsonSchema> = {};
  const body = walk(codec, defs);
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    ...root,
    ...body,
    ...(Object.keys(defs).length > 0 ? { $defs: defs } : {}),
  };
}

function walk(codec: t.Mixed, defs: Record<string, JsonSchema>): JsonSchema {
  const annotated = annotationOf(codec);
  if (annotated !== undefined) return typeof annotated === 'function' ? annotated((c) => walk(c, defs)) : annotated;
  if (codec instanceof StrictType) {
    return objectSchema(codec.required as t.Props, codec.optional as t.Props, false, defs);
  }
  if (codec instanceof t.InterfaceType) return objectSchema(codec.props as t.Props, {}, true, defs);
  if (codec instanceof t.PartialType) return objectSchema({}, codec.props as t.Props, true, defs);
  if (codec instanceof t.IntersectionType) return { allOf: (codec.types as t.Mixed[]).map((c) => walk(c, defs)) };
  if (codec instanceof t.UnionType) return { anyOf: (codec.types as t.Mixed[]).map((c) => walk(c, defs)) };
  if (codec instanceof t.KeyofType) return { enum: Object.keys(codec.keys as object) };
  if (codec instanceof t.LiteralType) return { const: codec.value };
  if (codec instanceof t.ArrayType || codec instanceof t.ReadonlyArrayType)
    return { type: 'array', items: walk(codec.type as t.Mixed, defs) };
  if (codec instanceof t.DictionaryType) {
    return { type: 'object', additionalProperties: walk(codec.codomain as t.Mixed, defs) };
  }
  if (codec instanceof t.RecursiveType) {
    // Named once under $defs; the definition refers to itself through the same $ref.
    const ref = { $ref: `#/$defs/${codec.name}` };
    if (!(codec.name in defs)) {
      defs[codec.name] = {};
      defs[codec.name] = walk(codec.type as t.Mixed, defs);
    }
    return ref;
  }
  if (codec instanceof t.StringType) return { type: 'string' };
  if (codec instanceof t.NumberType) return { type: 'number' };
  if (codec instanceof t.BooleanType) return { type: 'boolean' };
  if (codec instanceof t.NullType) return { type: 'null' };
  if (codec instanceof t.AnyDictionaryType) return { type: 'object' };
  if (codec instanceof t.UnknownType) return {};
  throw new TypeError(`no JSON Schema for codec '${codec.name}': give it one with annotate()`);
}

function objectSchema(required: t.Props, optional: t.Props, open: boolean, defs: Record<string, JsonSchema>): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  for (const [key, codec] of Object.entries({ ...required, ...optional })) properties[key] = walk(codec, defs);
  const names = Object.keys(required);
  return {
    type: 'object',
    properties,
    ...(names.length > 0 ? { required: names } : {}),
    ...(open ? {} : { additionalProperties: false }),
  };
}

// redisStream's message format (DESIGN §12, §19), written by queueStep and read by redisStream:
// fields `body` (JSON), `id` (the sender's event id), `path`, `headers` (one JSON object).
import type { ServingEvent } from '../event.js';

/** The fields of `event` as a message: `body` (JSON), `id`, and `path` and `headers` when it has them. Throws when the body is not JSON. */
export function messageFields(event: ServingEvent, field = 'body'): string[] {
  const body = JSON.stringify(event.body);
  // JSON.stringify(undefined) is undefined: such a body travels as null, as over HTTP.
  const fields = [field, body ?? 'null', 'id', event.id];
  if (event.path !== undefined) fields.push('path', event.path);
  if (event.headers !== undefined && Object.keys(event.headers).length > 0) fields.push('headers', JSON.stringify(event.headers));
  return fields;
}

/** A message's fields read back: the raw body field, and the event's path, headers and the sender's id. */
export interface ReadMessage {
  readonly raw: string | undefined;
  readonly path: string | undefined;
  readonly headers: Record<string, string>;
  readonly sourceId: string | undefined;
}

/**
 * Reads a message's fields (`[name, value, ...]`): `field` is the body; `id`, `path` and a
 * `headers` JSON object are what a queueStep sent; any other field is a header of its own (as
 * redisStream always read them). A `headers` field that is not a JSON object of strings stays
 * a plain header; `__proto__` keys are never copied.
 */
export function readMessage(fields: readonly string[] | null, field: string): ReadMessage {
  const headers: Record<string, string> = {};
  let raw: string | undefined;
  let path: string | undefined;
  let sourceId: string | undefined;
  for (let i = 0; fields && i + 1 < fields.length; i += 2) {
    const name = fields[i];
    const value = fields[i + 1];
    if (name === field && raw === undefined) raw = value;
    else if (name === 'id' && sourceId === undefined) sourceId = value;
    else if (name === 'path' && path === undefined) path = value;
    else if (name === 'headers' && copyHeaders(value, headers)) continue;
    else if (name !== '__proto__') headers[name] = value;
  }
  return { raw, path, headers, sourceId };
}

/** Copies a JSON object of string values into `headers`; false when `json` is not one. */
function copyHeaders(json: string, headers: Record<string, string>): boolean {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return false;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return false;
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (!entries.every(([, v]) => typeof v === 'string')) return false;
  for (const [name, value] of entries) if (name !== '__proto__') headers[name] = value as string;
  return true;
}

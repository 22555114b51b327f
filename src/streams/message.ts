// redisStream's message format (docs/design.md §12, §19), written by queueStep and read by redisStream —
// fields `body` (JSON), `id` (the sender's event id), `path`, `headers` (one JSON object) — and
// messages as events: a body Redis cannot vouch for is checked here, at the edge, as serve()
// checks an HTTP body.
import { bodyProblem } from '../body.js';
import { toEvent, type ServingEvent } from '../event.js';

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

/** A stream entry as Redis returns it: its id and its flat field/value list (null once deleted). */
export type Entry = [id: string, fields: string[] | null];

/**
 * The entries of a one-stream XREADGROUP reply, whatever the client's protocol: RESP2
 * `[[stream, entries]]`; RESP3 (ioredis 6's default) a map, as `[stream, entries]` or, with
 * `replyMapping: 'resp3'`, `{ [stream]: entries }`; `null` on timeout.
 */
export function readEntries(reply: unknown): Entry[] {
  let entries: unknown;
  if (Array.isArray(reply)) entries = Array.isArray(reply[0]) ? (reply[0] as unknown[])[1] : reply[1];
  else if (reply !== null && typeof reply === 'object') entries = Object.values(reply)[0];
  return Array.isArray(entries) ? (entries as Entry[]) : [];
}

/**
 * One message as an event: `id` the message id, `body` its `field` parsed as JSON, a queueStep's
 * `path` and `headers` back on the event and its sender's id as `metadata.sourceId`, other fields
 * as headers. A message that cannot be served — the field missing or not JSON, a body nested
 * deeper than `maxBodyDepth`, or one with `__proto__` / `constructor.prototype` keys (JSON.parse
 * keeps them as own keys; a later copy or merge would replace a prototype) — becomes an event
 * errored with a `TypeError` naming the field: it passes every step untouched and is committed
 * with that error, so no model ever sees it.
 */
export function toMessageEvent(
  o: { readonly stream: string; readonly field: string; readonly maxBodyDepth: number },
  [id, fields]: Entry,
  reclaimed: boolean,
): ServingEvent {
  const { raw, path, headers, sourceId } = readMessage(fields, o.field);
  const metadata: Record<string, unknown> = { stream: o.stream };
  if (reclaimed) metadata.reclaimed = true;
  if (sourceId !== undefined) metadata.sourceId = sourceId;
  const refuse = (error: TypeError, body: unknown) => toEvent(body, { id, path, headers, metadata, error, origin: 'redisStream' });
  if (raw === undefined) return refuse(new TypeError(`redisStream: message ${id} has no field '${o.field}'`), null);
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch (cause) {
    return refuse(
      new TypeError(`redisStream: message ${id} field '${o.field}' is not valid JSON (${(cause as Error).message})`, { cause }),
      raw,
    );
  }
  const problem = bodyProblem(body, { maxDepth: o.maxBodyDepth, protoKeys: true });
  // The refused body is not carried on: nothing downstream should walk or copy it.
  if (problem !== undefined) return refuse(new TypeError(`redisStream: message ${id} field '${o.field}' is refused: ${problem}`), null);
  return toEvent(body, { id, path, headers, metadata });
}

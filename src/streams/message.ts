// From Redis replies to events: the entries of an XREADGROUP reply, and one message as a ServingEvent
// (a body Redis cannot vouch for is checked here, at the edge, as serve() checks an HTTP body).
import { bodyProblem } from '../body.js';
import { toEvent, type ServingEvent } from '../event.js';

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
 * One message as an event: `id` the message id, `body` its `field` parsed as JSON, the other
 * fields as `headers`. A message that cannot be served — the field missing or not JSON, a body
 * nested deeper than `maxBodyDepth`, or one with `__proto__` / `constructor.prototype` keys (JSON.parse
 * keeps them as own keys; a later copy or merge would replace a prototype) — becomes an event
 * errored with a `TypeError` naming the field: it passes every step untouched and is committed
 * with that error, so no model ever sees it.
 */
export function toMessageEvent(
  o: { readonly stream: string; readonly field: string; readonly maxBodyDepth: number },
  [id, fields]: Entry,
  reclaimed: boolean,
): ServingEvent {
  const headers: Record<string, string> = {};
  let raw: string | undefined;
  for (let i = 0; fields && i + 1 < fields.length; i += 2) {
    if (fields[i] === o.field && raw === undefined) raw = fields[i + 1];
    else headers[fields[i]] = fields[i + 1];
  }
  const metadata = reclaimed ? { stream: o.stream, reclaimed: true } : { stream: o.stream };
  const refuse = (error: TypeError, body: unknown) => toEvent(body, { id, headers, metadata, error, origin: 'redisStream' });
  if (raw === undefined) return refuse(new TypeError(`redisStream: message ${id} has no field '${o.field}'`), null);
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch (cause) {
    return refuse(new TypeError(`redisStream: message ${id} field '${o.field}' is not valid JSON (${(cause as Error).message})`, { cause }), raw);
  }
  const problem = bodyProblem(body, { maxDepth: o.maxBodyDepth, protoKeys: true });
  // The refused body is not carried on: nothing downstream should walk or copy it.
  if (problem !== undefined) return refuse(new TypeError(`redisStream: message ${id} field '${o.field}' is refused: ${problem}`), null);
  return toEvent(body, { id, headers, metadata });
}

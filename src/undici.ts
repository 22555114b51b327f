// undici, loaded on first use by the HTTP clients rxserve makes (LLM providers' node-http
// transport, remoteStep): one loader, so both keep everyone else's global fetch as it was.
import { createRequire } from 'node:module';

export type Undici = typeof import('undici');
let undici: Undici | undefined;

/**
 * undici, loaded on first use. Loading it installs its own Agent as the process's global
 * dispatcher — the one Node's global `fetch` uses — when none is set yet. Node's own undici
 * installs Node's when it loads (on first use of `fetch`, `Headers`, `Request` or `Response`), so
 * it is made to load first: rxserve's clients leave everyone else's `fetch` as it was.
 */
export function loadUndici(): Undici {
  if (undici !== undefined) return undici;
  void globalThis.Headers;
  undici = createRequire(import.meta.url)('undici') as Undici;
  return undici;
}

/** A fetch `Headers` as the plain record undici's dispatcher API sends (names lower-case). */
export function headerRecord(headers: Headers): Record<string, string> {
  const record: Record<string, string> = {};
  headers.forEach((value, name) => (record[name] = value));
  return record;
}

/** The headers of an undici dispatcher answer as a fetch `Headers` (repeated ones appended). */
export function fetchHeaders(headers: Readonly<Record<string, string | string[] | undefined>>): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(headers)) {
    if (Array.isArray(value)) for (const v of value) out.append(name, v);
    else if (value !== undefined) out.append(name, value);
  }
  return out;
}

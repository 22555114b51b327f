// API keys: the Authorization check (constant time over the keys) and the 401 it leads to.
import { createHash, timingSafeEqual } from 'node:crypto';
import { HttpError } from './status.js';

/** The 401 of a request without a valid key. */
export function unauthorized(): HttpError {
  return new HttpError('UnauthorizedError', 'this route needs an Authorization: Bearer <API key> header with a valid key', 401);
}

/** Checks an `Authorization` header against `apiKeys` (constant time over the keys); `undefined` without keys. */
export function apiKeyCheck(apiKeys: readonly string[] | undefined): ((header: string | undefined) => boolean) | undefined {
  if (apiKeys === undefined) return undefined;
  const keys = apiKeys.map(digest);
  return (header) => authorized(header, keys);
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** Constant-time over the keys: every key is compared, whichever matches. */
function authorized(header: string | undefined, keys: readonly Buffer[]): boolean {
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (match === null) return false;
  const given = digest(match[1]);
  let ok = false;
  for (const key of keys) ok = timingSafeEqual(given, key) || ok;
  return ok;
}

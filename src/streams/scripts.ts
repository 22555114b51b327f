// The Lua scripts that make redisStream's guarantees atomic, and how they are run (EVALSHA, EVAL on NOSCRIPT).
import { createHash } from 'node:crypto';
import type { RedisLike } from './options.js';

/**
 * Commit: for each (id, body, error) triple, write the answer to the output stream and XACK the
 * request, only while the request is still pending for this consumer. A message another consumer
 * reclaimed meanwhile is skipped (0), so a stalled consumer cannot answer it a second time.
 * KEYS: request stream, output stream. ARGV: group, consumer, then id, body, error ('' = none).
 */
export const COMMIT = `
local out = {}
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #p == 1 then
    if ARGV[i + 2] == '' then
      redis.call('XADD', KEYS[2], '*', 'id', id, 'body', ARGV[i + 1])
    else
      redis.call('XADD', KEYS[2], '*', 'id', id, 'body', ARGV[i + 1], 'error', ARGV[i + 2])
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
`;

/**
 * Skip: for each id, XACK the request without writing an answer, only while it is still pending
 * for this consumer (what `requests.filter` rejected). Like COMMIT, a message another consumer
 * reclaimed meanwhile is left alone (0): the other consumer's handling of it stands.
 * KEYS: request stream. ARGV: group, consumer, then the ids.
 */
export const SKIP = `
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #p == 1 then
    redis.call('XACK', KEYS[1], ARGV[1], id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
`;

/**
 * Reclaim: scans the group's pending entries idle at least ARGV[3] ms from cursor ARGV[4],
 * skipping this consumer's own. An entry delivered ARGV[6] times already goes to the dead-letter
 * stream (its fields, then id and deliveries) and is acknowledged; the others (at most ARGV[7])
 * are claimed for this consumer with XCLAIM, which counts a delivery.
 * XAUTOCLAIM cannot leave a consumer's own entries alone, hence XPENDING + XCLAIM here.
 * KEYS: request stream, dead-letter stream. ARGV: group, consumer, minIdle, cursor, count, maxDeliveries, maxClaim.
 * Returns { next cursor ('0' when done), claimed entries, dead-lettered count }.
 */
export const RECLAIM = `
local group, me, idle = ARGV[1], ARGV[2], ARGV[3]
local count, maxDeliveries, maxClaim = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local pending = redis.call('XPENDING', KEYS[1], group, 'IDLE', idle, ARGV[4], '+', count)
local claim, dead, last, stopped = {}, 0, nil, false
for _, p in ipairs(pending) do
  if #claim >= maxClaim then stopped = true break end
  local id, owner, deliveries = p[1], p[2], p[4]
  last = id
  if owner ~= me then
    if deliveries >= maxDeliveries then
      local args = { KEYS[2], '*' }
      local entry = redis.call('XRANGE', KEYS[1], id, id)
      if #entry == 1 then for _, v in ipairs(entry[1][2]) do args[#args + 1] = v end end
      args[#args + 1] = 'id'; args[#args + 1] = id
      args[#args + 1] = 'deliveries'; args[#args + 1] = tostring(deliveries)
      redis.call('XADD', unpack(args))
      redis.call('XACK', KEYS[1], group, id)
      dead = dead + 1
    else
      claim[#claim + 1] = id
    end
  end
end
local claimed = {}
if #claim > 0 then claimed = redis.call('XCLAIM', KEYS[1], group, me, idle, unpack(claim)) end
local nextCursor = '0'
if (stopped or #pending == count) and last then nextCursor = '(' .. last end
return { nextCursor, claimed, dead }
`;

const shas = new Map<string, string>();
const sha1 = (script: string) => {
  let sha = shas.get(script);
  if (!sha) shas.set(script, (sha = createHash('sha1').update(script).digest('hex')));
  return sha;
};

/** Runs a script by its SHA, loading it with EVAL the first time a server has not seen it (also after a restart). */
export async function runScript(redis: RedisLike, script: string, keys: string[], args: (string | number)[]): Promise<unknown> {
  try {
    return await redis.call('EVALSHA', sha1(script), keys.length, ...keys, ...args);
  } catch (error) {
    if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error;
    return redis.call('EVAL', script, keys.length, ...keys, ...args);
  }
}

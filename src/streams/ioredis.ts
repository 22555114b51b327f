// ioredis is an optional peer dependency: loaded here, on first use, and only by rxserve/streams.
import { RxServeError } from '../errors.js';
import type { RedisLike } from './options.js';

type RedisConstructor = new (url: string, options?: Record<string, unknown>) => RedisLike;

/** Opens a connection to `url` with ioredis (`options` added to its own), or rejects saying how to install it. */
export async function connect(url: string, options: Record<string, unknown> = {}): Promise<RedisLike> {
  let mod: { default?: unknown; Redis?: unknown };
  try {
    mod = await import('ioredis');
  } catch (cause) {
    throw new RxServeError("rxserve/streams needs the optional peer dependency 'ioredis': npm install ioredis@^6", { cause });
  }
  // ioredis is CommonJS: the class is `Redis` (named) or `default` depending on the loader.
  const Redis = (mod.Redis ?? (mod.default as { Redis?: unknown } | undefined)?.Redis ?? mod.default) as RedisConstructor;
  return new Redis(url, { lazyConnect: false, ...options });
}

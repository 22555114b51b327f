// A real redis-server for tests: started on a free loopback port in a temp dir, stopped in afterAll.
// Absent server → the suite skips with one visible line, unless RXSERVE_REQUIRE_REDIS=1 (CI).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';

/** True when `redis-server` is on PATH. */
export const hasRedis = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;

/** Whether a suite needing Redis should run; warns once (or throws under RXSERVE_REQUIRE_REDIS=1) when it cannot. */
export function redisAvailable(suite: string): boolean {
  if (hasRedis) return true;
  if (process.env.RXSERVE_REQUIRE_REDIS === '1') {
    throw new Error(`${suite}: redis-server not found and RXSERVE_REQUIRE_REDIS=1 (install it: apt-get install -y redis-server)`);
  }
  console.warn(`${suite}: redis-server not found, skipping (install it: apt-get install -y redis-server)`);
  return false;
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its temp dir. */
  stop(): Promise<void>;
  /** Kills the server with SIGKILL (a crash) and removes its temp dir. */
  kill(): Promise<void>;
}

/** A free loopback TCP port (bound and released; the server binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts `redis-server --port N --save '' --appendonly no` in a temp dir; resolves once it accepts connections. */
export async function startRedis(port?: number): Promise<RedisServer> {
  const p = port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'rxserve-redis-'));
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + 10_000;
  while (!(await ping(p))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server on port ${p} did not start`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const end = async (signal: NodeJS.Signals) => {
    if (!exited) {
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { port: p, url: `redis://127.0.0.1:${p}`, stop: () => end('SIGTERM'), kill: () => end('SIGKILL') };
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/**
 * A suite's redis-server and one client to it: started in `beforeAll`, quit and stopped in
 * `afterAll`; `use` receives both once they are up (suites keep them in their own `let`s).
 */
export function withRedis(use: (server: RedisServer, redis: Redis) => void): void {
  let server: RedisServer | undefined;
  let redis: Redis | undefined;
  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    use(server, redis);
  });
  afterAll(async () => {
    await redis?.quit();
    await server?.stop();
  });
}

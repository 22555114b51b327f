// A graph across two processes (docs/design.md §19). The front process serves HTTP: it checks each request,
// enriches it with a call to a profile service (remoteStep: retries, timeout, bounded in flight),
// and hands it to a Redis stream (queueStep) — the HTTP answer is "accepted" once Redis has it.
// The worker process (worker.mjs) consumes that stream with redisStream, runs the model and
// commits each answer to the 'answers' stream, which this process reads back and checks.
// Starts its own redis-server on a free loopback port.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { Redis } from 'ioredis';
import { pipe } from 'rxjs';
import { remoteStep, serve, step, type Server } from 'rxserve';
import { queueStep } from 'rxserve/streams';
import { startRedisServer } from '../redisServer.js';

let failures = 0;
const check = (label: string, ok: boolean) => {
  console.log(`${ok ? '✓' : '✗'} ${label}`);
  if (!ok) failures++;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// 1. A throwaway redis-server on a free loopback port.
const redisServer = await startRedisServer('two-process');
const { url } = redisServer;

// 2. A profile service the front calls (another team's REST service). It fails its first call
//    with a 503, which remoteStep retries.
let profileCalls = 0;
const profiles = createHttpServer((req, res) => {
  profileCalls++;
  if (profileCalls === 1) return void res.writeHead(503, { 'retry-after': '0' }).end('warming up');
  const user = decodeURIComponent((req.url ?? '').split('/').pop() ?? '');
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ user, weight: user === 'ann' ? 2 : 1 }));
});
await new Promise<void>((resolve) => profiles.listen(0, '127.0.0.1', resolve));
const profileUrl = `http://127.0.0.1:${(profiles.address() as { port: number }).port}`;

let worker: ChildProcess | undefined;
let front: Server | undefined;
let redis: Redis | undefined;
try {
  redis = new Redis(url);

  // 3. The worker process: redisStream → model → commit.
  worker = spawn(process.execPath, [new URL('./worker.mjs', import.meta.url).pathname, url], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    worker!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    worker!.once('exit', (code) => reject(new Error(`the worker exited (${code})`)));
  });

  // 4. The front process: validate → enrich over HTTP → queue. Its answer is the queued body.
  const front$ = pipe(
    step(
      (body: { user?: unknown; text?: unknown }) => {
        if (typeof body.user !== 'string' || typeof body.text !== 'string')
          throw new TypeError('a request needs { user: string, text: string }');
        return body;
      },
      { name: 'validate' },
    ),
    remoteStep({
      name: 'profile',
      urlExpression: (e) => `${profileUrl}/profiles/${encodeURIComponent((e.body as { user: string }).user)}`,
      method: 'GET',
      resultPath: 'profile',
      timeoutMs: 5_000,
      backoff: { baseDelayMs: 10 },
    }),
    queueStep({ redis: url, stream: 'requests' }),
  );
  front = await serve(front$, { port: 0 });
  console.log(`front listening on ${front.url}; worker pid ${worker.pid}`);

  // 5. Clients: 20 requests with their own ids, paths and headers, and one bad request.
  const users = ['ann', 'bob', 'cyd', 'dee'];
  const sent = Array.from({ length: 20 }, (_, i) => ({ id: `req-${i}`, user: users[i % 4], text: `request number ${i}` }));
  const replies = await Promise.all(
    sent.map((r) =>
      fetch(`${front!.url}/score/${r.user}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': r.id, 'x-tenant': 'acme' },
        body: JSON.stringify({ user: r.user, text: r.text }),
      }),
    ),
  );
  check(
    'the front accepted every request (200 once queued)',
    replies.every((r) => r.status === 200),
  );
  const bad = await fetch(`${front.url}/score/x`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":1}' });
  check('a bad request is answered 400 by the front and never queued', bad.status === 400 && (await redis.xlen('requests')) === 20);

  // 6. The answers, read back from the 'answers' stream the worker commits to.
  for (let i = 0; (await redis.xlen('answers')) < sent.length; i++) {
    if (i > 500) throw new Error('the answers did not all arrive');
    await sleep(20);
  }
  const answers = (await redis.xrange('answers', '-', '+')).map(
    ([, f]) => JSON.parse(f[f.indexOf('body') + 1]) as { requestId: string; path: string; tenant: string; score: number; worker: number },
  );
  console.log(`answers: ${answers.length}, e.g. ${JSON.stringify(answers[0])}`);
  const byId = new Map(answers.map((a) => [a.requestId, a]));
  check(
    'every request answered exactly once, by the worker process',
    answers.length === sent.length && byId.size === sent.length && answers.every((a) => a.worker === worker!.pid),
  );
  check(
    "each answer is its request's: score from the text and the profile's weight, path and headers carried across",
    sent.every((r) => {
      const a = byId.get(r.id);
      return (
        a !== undefined && a.score === r.text.length * (r.user === 'ann' ? 2 : 1) && a.path === `/score/${r.user}` && a.tenant === 'acme'
      );
    }),
  );
  check("the profile service's 503 was retried", profileCalls === sent.length + 1);
  check('nothing is left pending in the group', Number(((await redis.xpending('requests', 'workers')) as [number])[0]) === 0);
} finally {
  await front?.close();
  if (worker && worker.exitCode === null) {
    const exited = new Promise((r) => worker!.once('exit', r));
    worker.kill('SIGTERM');
    await exited;
  }
  redis?.disconnect();
  profiles.close();
  await redisServer.stop();
}
process.exit(failures > 0 ? 1 : 0);

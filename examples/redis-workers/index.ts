// Scale-out with Redis Streams: one producer, two worker processes sharing a consumer group. One
// worker is killed with SIGKILL mid-run; the other reclaims the messages it held and finishes.
// Every request is answered exactly once; heartbeats are acknowledged without an answer
// (requests.filter); hostile bodies are answered with a TypeError and reach no model.
// Starts its own redis-server on a free port.
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { startRedisServer } from '../redisServer.js';

let failures = 0;
const check = (label: string, ok: boolean) => {
  console.log(`${ok ? '✓' : '✗'} ${label}`);
  if (!ok) failures++;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// 1. A throwaway redis-server on a free loopback port.
const redisServer = await startRedisServer('redis-workers');
const { url } = redisServer;
const workers: ChildProcess[] = [];
let redis: Redis | undefined;
try {
  const client = (redis = new Redis(url));
  // 2. The producer: 400 requests with a heartbeat after every tenth, and two hostile bodies (nested
  //    5,000 deep; a __proto__ key), all written before any worker runs (the group starts at '0').
  const total = 400;
  const pipe = client.pipeline();
  const kinds: string[] = [];
  for (let i = 0; i < total; i++) {
    pipe.xadd('requests', '*', 'body', JSON.stringify({ text: `request number ${i}` }));
    kinds.push('request');
    if (i % 10 === 9) {
      pipe.xadd('requests', '*', 'body', JSON.stringify({ kind: 'heartbeat' }));
      kinds.push('heartbeat');
    }
  }
  pipe.xadd('requests', '*', 'body', '{"a":'.repeat(5_000) + '1' + '}'.repeat(5_000));
  pipe.xadd('requests', '*', 'body', '{"text": "hi", "__proto__": {"isAdmin": true}}');
  kinds.push('hostile', 'hostile');
  const written = ((await pipe.exec()) ?? []).map(([, id]) => id as string);
  const ids = new Set(written.filter((_, i) => kinds[i] === 'request'));
  const hostile = written.filter((_, i) => kinds[i] === 'hostile');
  const heartbeats = kinds.filter((k) => k === 'heartbeat').length;
  console.log(`producer: ${ids.size} requests, ${heartbeats} heartbeats and ${hostile.length} hostile bodies on stream 'requests'`);

  // 3. Two workers in group 'scorers'.
  const worker = (name: string) => {
    const child = spawn(process.execPath, [new URL('./consumer.mjs', import.meta.url).pathname, url, name], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const state = { read: 0, stats: undefined as undefined | Record<string, number>, exited: new Promise((r) => child.once('exit', r)) };
    let buffered = '';
    child.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('read ')) state.read = Number(line.slice(5));
        if (line.startsWith('stats ')) state.stats = JSON.parse(line.slice(6));
      }
    });
    workers.push(child);
    return { child, state };
  };
  const a = worker('worker-a');
  const b = worker('worker-b');

  // 4. Kill worker-a with SIGKILL once it is busy: no chance to commit what it holds.
  const holding = async (name: string) => ((await client.xpending('requests', 'scorers', '-', '+', 1000, name)) as unknown[]).length;
  for (let i = 0; a.state.read < 40 || (await holding('worker-a')) < 8; i++) {
    if (i > 1_000) throw new Error('worker-a never got busy');
    await sleep(5);
  }
  a.child.kill('SIGKILL');
  await a.state.exited;
  const held = await holding('worker-a');
  console.log(`worker-a killed after reading ${a.state.read} messages, holding ${held} uncommitted`);

  // 5. worker-b finishes the stream, and after claimIdleMs reclaims what worker-a held.
  for (let i = 0; (await client.xlen('scores')) < total + hostile.length; i++) {
    if (i > 1_000) throw new Error('the answers did not all arrive');
    await sleep(20);
  }
  b.child.kill('SIGTERM'); // graceful: close() commits what is in flight
  await b.state.exited;
  console.log(`worker-b: ${JSON.stringify(b.state.stats)}`);

  const field = (f: string[], name: string) => (f.includes(name) ? f[f.indexOf(name) + 1] : undefined);
  const all = (await client.xrange('scores', '-', '+')).map(([, f]) => ({
    id: field(f, 'id')!,
    body: field(f, 'body')!,
    error: field(f, 'error'),
  }));
  const answers = all.filter((a) => !hostile.includes(a.id));
  const answered = answers.map((a) => a.id);
  const byWorker = new Map<string, number>();
  for (const a of answers) {
    const by = (JSON.parse(a.body) as { by: string }).by;
    byWorker.set(by, (byWorker.get(by) ?? 0) + 1);
  }
  console.log(`answers: ${answers.length} (${[...byWorker].map(([w, n]) => `${w} ${n}`).join(', ')})`);
  // In request order (answers land in commit order, from either worker).
  const refused = hostile.flatMap((id) => all.filter((a) => a.id === id));
  for (const a of refused) console.log(`refused: ${(a.error ?? '').slice(0, 110)}…`);
  check(
    'every request answered exactly once',
    answered.length === total && new Set(answered).size === total && answered.every((id) => ids.has(id)),
  );
  check('no heartbeat answered; worker-b skipped some (requests.filter)', (b.state.stats?.skipped ?? 0) > 0);
  check(
    'each hostile body answered once, with a TypeError saying why',
    refused.length === 2 && /nested deeper than 256 levels/.test(refused[0].error ?? '') && /'__proto__' key/.test(refused[1].error ?? ''),
  );
  check('worker-a held messages when it died, and worker-b reclaimed them all', held > 0 && b.state.stats?.reclaimed === held);
  check('nothing is left pending in the group', Number(((await client.xpending('requests', 'scorers')) as [number])[0]) === 0);
} finally {
  for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
  redis?.disconnect();
  await redisServer.stop();
}
process.exit(failures > 0 ? 1 : 0);

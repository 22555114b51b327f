// What a hostile client can and cannot do to serve(): a probe you can rerun.
//   npm run build --silent && npx tsx bench/hostile.ts [--request-timeout-ms 60000]
// Starts bench/fixtures/hostileTarget.mjs (serve() with apiKeys, dashboard and metrics, in a process
// of its own), then attacks it over loopback: sockets that trickle a body or headers or say nothing,
// refused requests that go on sending, malformed requests of every kind, a sign-in brute force, API
// key guessing, and idle kept-alive sockets. Prints markdown tables (docs/reliability.md, "What a
// hostile client can and cannot do") with the server's sockets and memory before, during and after.
import { fork } from 'node:child_process';
import { connect } from 'node:net';
import { loadavg } from 'node:os';

const at = process.argv.indexOf('--request-timeout-ms');
const requestTimeoutMs = at >= 0 ? Number(process.argv[at + 1]) : 60_000;
const KEY = 'probe-key';

interface Stats {
  rss: number;
  heapUsed: number;
  connections: number;
  inFlight: number;
}

const child = fork(new URL('./fixtures/hostileTarget.mjs', import.meta.url), [String(requestTimeoutMs)], {
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  execArgv: ['--expose-gc'],
});
const url = await new Promise<string>((resolve, reject) => {
  child.once('message', (m: { url: string }) => resolve(m.url));
  child.once('exit', (code) => reject(new Error(`the target exited (${code}) before it listened`)));
});
const port = Number(new URL(url).port);
const stats = (): Promise<Stats> =>
  new Promise((resolve) => {
    child.once('message', (m: { stats: Stats }) => resolve(m.stats));
    child.send('stats');
  });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

/** One raw connection: the status the server answered, and when (ms after opening) it ended the connection. */
function open(opening = ''): {
  answered: Promise<number>;
  /** The answer so far (its first 4 KB). */
  text(): string;
  ended: Promise<{ ms: number; status: number }>;
  write(chunk: string | Buffer): void;
  destroy(): void;
} {
  const socket = connect(port, '127.0.0.1');
  const opened = Date.now();
  let head = '';
  let answer!: (status: number) => void;
  const answered = new Promise<number>((resolve) => (answer = resolve));
  socket.on('data', (chunk: Buffer) => {
    if (head.length < 4096) head += chunk.toString('latin1');
    const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1];
    if (status !== undefined) answer(Number(status));
  });
  socket.on('error', () => undefined);
  if (opening) socket.write(opening);
  const ended = new Promise<{ ms: number; status: number }>((resolve) => {
    const done = () => {
      answer(0);
      resolve({ ms: Date.now() - opened, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0) });
    };
    socket.once('end', done);
    socket.once('close', done);
  });
  return {
    answered,
    text: () => head,
    ended,
    write: (chunk) => void (socket.writable && !socket.destroyed && socket.write(chunk)),
    destroy: () => socket.destroy(),
  };
}

function trickle(client: ReturnType<typeof open>, chunk: string, everyMs: number): void {
  const timer = setInterval(() => client.write(chunk), everyMs);
  void client.ended.then(() => clearInterval(timer));
}

const post = (path: string, body: string, headers: Record<string, string> = {}) =>
  fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
    body,
  });

// ---- warm-up: the memory baseline is a server that has served ------------------------------------
for (let i = 0; i < 300; i++) await (await post('/score', JSON.stringify({ i }))).text();
const before = await stats();

// ---- 1. slow clients: 1,000 sockets held open by trickling, or by saying nothing -----------------
const head = (auth: boolean) =>
  `POST /score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${auth ? `authorization: Bearer ${KEY}\r\n` : ''}content-length: 1000000\r\n\r\n`;
const slow = [
  ...Array.from({ length: 200 }, () => ({ kind: 'a body trickled at 1 byte/s, with a key', client: open(head(true)) })),
  ...Array.from({ length: 200 }, () => ({ kind: 'a body trickled at 1 byte/s, without a key', client: open(head(false)) })),
  ...Array.from({ length: 200 }, () => ({ kind: 'headers trickled at one line/s', client: open('POST /score HTTP/1.1\r\nhost: x\r\n') })),
  ...Array.from({ length: 400 }, () => ({ kind: 'connected, sending nothing', client: open() })),
];
for (const { kind, client } of slow) {
  if (kind.startsWith('a body')) trickle(client, 'a', 1_000);
  else if (kind.startsWith('headers')) trickle(client, 'x-pad: 1\r\n', 1_000);
}
await sleep(5_000);
const during = await stats();
// Bounded: a server that never cuts them (before requestTimeoutMs existed) would hold them forever.
const deadline = sleep(requestTimeoutMs + 15_000).then(() => undefined);
const slowEnds = await Promise.all(slow.map(async ({ kind, client }) => ({ kind, end: await Promise.race([client.ended, deadline]) })));
const stillOpen = await stats();
for (const { client } of slow) client.destroy();
await sleep(500);
const afterSlow = await stats();
const slowRows: string[] = [];
for (const kind of [...new Set(slow.map((s) => s.kind))]) {
  const ends = slowEnds.filter((e) => e.kind === kind);
  const closed = ends.flatMap((e) => (e.end === undefined ? [] : [e.end]));
  const statuses = [...new Set(closed.map((e) => e.status || 'none'))].join(', ') || '–';
  const times = closed.map((e) => e.ms).sort((a, b) => a - b);
  const open = ends.length - closed.length;
  const span = times.length ? `${(times[0]! / 1000).toFixed(1)} s | ${(times.at(-1)! / 1000).toFixed(1)} s` : '– | –';
  slowRows.push(`| ${kind} | ${ends.length} | ${statuses} | ${span} | ${open} |`);
}

// ---- 2. malformed and refused requests, each 20 times on a connection of its own -----------------
const deep = `${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}`;
const big = Buffer.alloc(11 * 2 ** 20, 'a');
const requests: [string, () => string | Buffer][] = [
  [
    'not JSON',
    () =>
      `POST /score HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{"a": nop`,
  ],
  [
    'a `__proto__` key',
    () => {
      const b = '{"__proto__":{"admin":true}}';
      return `POST /score HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\ncontent-type: application/json\r\ncontent-length: ${b.length}\r\n\r\n${b}`;
    },
  ],
  [
    'a body nested 5,000 deep (30 KB)',
    () =>
      `POST /score HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\ncontent-type: application/json\r\ncontent-length: ${deep.length}\r\n\r\n${deep}`,
  ],
  [
    'an 11 MiB body (limit 10 MiB)',
    () =>
      Buffer.concat([
        Buffer.from(
          `POST /score HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\ncontent-type: application/json\r\ncontent-length: ${big.length}\r\n\r\n`,
        ),
        big,
      ]),
  ],
  [
    '`text/plain`',
    () => `POST /score HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nhi`,
  ],
  ['no API key', () => `POST /score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`],
  ['an unknown route, no key', () => `GET /admin/secrets HTTP/1.1\r\nhost: x\r\n\r\n`],
  ['an unknown route, with the key', () => `GET /admin/secrets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\n\r\n`],
  ['a bad percent-encoding in the path', () => `GET /v2/models/%E0%A4%A HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\n\r\n`],
  ['a 150-character path segment', () => `GET /v2/models/${'m'.repeat(150)} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\n\r\n`],
  ['a 20 KB header', () => `GET /v2/health/live HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`],
  ['bytes that are not HTTP', () => 'HELLO THERE\r\n\r\n'],
];
const malformedRows: string[] = [];
for (const [label, make] of requests) {
  const ends = await Promise.all(
    Array.from({ length: 20 }, async () => {
      const client = open();
      client.write(make());
      const status = await Promise.race([client.answered, sleep(10_000).then(() => -1)]);
      // Closed by the server within 2 s of its answer, or kept open (a keep-alive connection)?
      const closed = status >= 0 && (await Promise.race([client.ended.then(() => true), sleep(2_000).then(() => false)]));
      client.destroy();
      const body = client.text().split('\r\n\r\n')[1] ?? '';
      return { status, closed, shaped: /^\{"error":"[A-Za-z]+: /.test(body) };
    }),
  );
  const statuses = [
    ...new Set(ends.map((e) => (e.status === -1 ? 'no answer in 10 s' : e.status === 0 ? 'reset before the answer was read' : e.status))),
  ].join(', ');
  const closed = ends.filter((e) => e.closed).length;
  const shaped = ends.filter((e) => e.shaped).length;
  malformedRows.push(`| ${label} | ${statuses} | ${shaped} of 20 | ${closed} of 20 |`);
}
const afterMalformed = await stats();

// ---- 3. the dashboard's sign-in, brute-forced; API keys guessed ---------------------------------
const signIns = { 401: 0, 429: 0, other: 0 };
let started = Date.now();
for (let i = 0; i < 1_000; i++) {
  const r = await fetch(`${url}/dashboard/login`, { method: 'POST', body: new URLSearchParams({ key: `guess-${i}` }), redirect: 'manual' });
  await r.text();
  if (r.status === 401 || r.status === 429) signIns[r.status]++;
  else signIns.other++;
}
const signInSeconds = (Date.now() - started) / 1000;
let guesses = 0;
started = Date.now();
for (let i = 0; i < 2_000; i++) {
  const r = await post('/score', '{}', { authorization: `Bearer guess-${i}` });
  await r.text();
  if (r.status === 401) guesses++;
}
const guessSeconds = (Date.now() - started) / 1000;

// ---- 4. idle kept-alive sockets: one valid request each, then silence ---------------------------
const idle = Array.from({ length: 2_000 }, () => open(`GET /v2/health/live HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\n\r\n`));
await sleep(3_000);
const holding = await stats();
for (const client of idle) client.destroy();
await sleep(1_000);

// ---- after: the server still answers, nothing in flight, memory back -----------------------------
const legit = await post('/score', JSON.stringify({ after: true }));
const legitBody = await legit.text();
await sleep(500);
const after = await stats();
child.disconnect();

const load = loadavg()
  .map((l) => l.toFixed(2))
  .join(', ');
console.log(
  `Probe of ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, Node ${process.version}, requestTimeoutMs ${requestTimeoutMs}, load average ${load}.\n`,
);
console.log('Slow clients (1,000 sockets at once):\n');
console.log(
  `| the client | sockets | answered | first closed | last closed | still open after ${(requestTimeoutMs + 15_000) / 1000} s |\n|---|---|---|---|---|---|`,
);
console.log(slowRows.join('\n'));
console.log(`\nServer connections 5 s in: ${during.connections}; ${(requestTimeoutMs + 15_000) / 1000} s in: ${stillOpen.connections}.\n`);
console.log('Malformed and refused requests (20 each, a connection each):\n');
console.log(
  '| request | status | body `{ "error": "<Name>: ..." }` | connection closed by the server (within 2 s of its answer) |\n|---|---|---|---|',
);
console.log(malformedRows.join('\n'));
console.log(
  `\nDashboard sign-in, 1,000 wrong keys from one address: ${signIns[401]} × 401, ${signIns[429]} × 429${signIns.other ? `, ${signIns.other} other` : ''} (${signInSeconds.toFixed(1)} s).`,
);
console.log(`API key guessing on POST /score: ${guesses} of 2,000 answered 401, ${(2_000 / guessSeconds).toFixed(0)} guesses/s, no limit.`);
console.log(
  `Idle kept-alive sockets after one request each: ${holding.connections} of 2,000 held by the server 3 s later (kept until keepAliveTimeout, 72 s).`,
);
console.log(`\nA request after it all: ${legit.status} ${legitBody}; in flight: ${after.inFlight}.\n`);
console.log(
  '| server | before | 1,000 slow sockets (5 s in) | after slow | after malformed | 2,000 idle sockets | after all |\n|---|---|---|---|---|---|---|',
);
const all = [before, during, afterSlow, afterMalformed, holding, after];
console.log(`| connections | ${all.map((s) => s.connections).join(' | ')} |`);
console.log(`| RSS, MiB | ${all.map((s) => mb(s.rss)).join(' | ')} |`);
console.log(`| heap used after GC, MiB | ${all.map((s) => mb(s.heapUsed)).join(' | ')} |`);

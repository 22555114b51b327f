// createNodeFetch (undici Agent) and the default transport's fetch (the global dispatcher, Node's
// bundled undici here) against real loopback HTTP servers: what the LLM clients rely on fetch
// for, and that credentials never follow a redirect to another origin.
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFetch, globalDispatcherFetch } from '../src/llm/nodeFetch.js';

const root = fileURLToPath(new URL('..', import.meta.url));

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

let server: http.Server;
let base: string;
const seen: Seen[] = [];
let closedEarly = 0;
// A second server: another port is another origin.
let other: http.Server;
let otherBase: string;
const seenByOther: Seen[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      const url = new URL(req.url!, 'http://x');
      switch (url.pathname) {
        case '/json':
          res.writeHead(200, { 'content-type': 'application/json', 'x-multi': ['a', 'b'] });
          return res.end(JSON.stringify({ method: req.method, body }));
        case '/gzip':
          res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
          return res.end(zlib.gzipSync(JSON.stringify({ zipped: true })));
        case '/empty':
          res.writeHead(204);
          return res.end();
        case '/see-other':
          res.writeHead(303, { location: '/json?from=303' });
          return res.end();
        case '/temporary':
          res.writeHead(307, { location: '/json?from=307' });
          return res.end();
        case '/to-other':
          res.writeHead(Number(url.searchParams.get('code') ?? 302), { location: `${otherBase}/echo` });
          return res.end();
        case '/same-origin':
          res.writeHead(302, { location: `${base}/json?from=302` });
          return res.end();
        case '/loop':
          res.writeHead(302, { location: '/loop' });
          return res.end();
        case '/status':
          res.writeHead(Number(url.searchParams.get('code')), { 'content-type': 'text/plain' });
          return res.end('status body');
        case '/events': {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: one\n\n');
          // The second event comes only after the client read the first: proves streaming.
          const timer = setTimeout(() => res.end('data: two\n\n'), 100);
          res.on('close', () => clearTimeout(timer));
          return;
        }
        case '/hang':
          res.on('close', () => closedEarly++);
          return; // never answers
        default:
          res.writeHead(404);
          return res.end('not found');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  other = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seenByOther.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ other: true, authorization: req.headers.authorization ?? null }));
    });
  });
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  otherBase = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const s of [server, other]) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

const fetches: [string, typeof fetch][] = [
  ['createNodeFetch', createNodeFetch()],
  ['the default transport (global dispatcher)', globalDispatcherFetch],
];

describe.each(fetches)('%s', (name, nodeFetch) => {
  it('POSTs a string body with its headers and reads a JSON answer, status and headers', async () => {
    const res = await nodeFetch(`${base}/json`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer k' },
      body: '{"a":1}',
    });
    expect(res.status).toBe(200);
    expect(res.ok).toBe(true);
    expect(res.headers.get('x-multi')).toBe('a, b');
    expect(await res.json()).toEqual({ method: 'POST', body: '{"a":1}' });
    const last = seen.at(-1)!;
    expect(last.headers.authorization).toBe('Bearer k');
    expect(last.headers['content-length']).toBe('7');
  });

  it('takes a Request, bytes, a Blob or URLSearchParams as fetch does', async () => {
    const viaRequest = await nodeFetch(new Request(`${base}/json`, { method: 'PUT', body: 'from a Request' }));
    expect(await viaRequest.json()).toEqual({ method: 'PUT', body: 'from a Request' });
    const bytes = await nodeFetch(`${base}/json`, { method: 'POST', body: new TextEncoder().encode('bytes') });
    expect(((await bytes.json()) as { body: string }).body).toBe('bytes');
    const blob = await nodeFetch(`${base}/json`, { method: 'POST', body: new Blob(['blob body'], { type: 'text/plain' }) });
    expect(((await blob.json()) as { body: string }).body).toBe('blob body');
    expect(seen.at(-1)!.headers['content-type']).toBe('text/plain');
    const form = await nodeFetch(`${base}/json`, { method: 'POST', body: new URLSearchParams({ q: 'a b' }) });
    expect(((await form.json()) as { body: string }).body).toBe('q=a+b');
  });

  it('decodes a gzip body; a 204 has a null body; error statuses resolve like fetch', async () => {
    expect(await (await nodeFetch(`${base}/gzip`)).json()).toEqual({ zipped: true });
    const empty = await nodeFetch(`${base}/empty`);
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();
    const failed = await nodeFetch(`${base}/status?code=503`);
    expect(failed.status).toBe(503);
    expect(failed.ok).toBe(false);
    expect(await failed.text()).toBe('status body');
  });

  it('follows redirects (303 becomes GET, 307 keeps the method and body) and stops a loop', async () => {
    const other = await nodeFetch(`${base}/see-other`, { method: 'POST', body: 'dropped' });
    expect(await other.json()).toEqual({ method: 'GET', body: '' });
    const temporary = await nodeFetch(`${base}/temporary`, { method: 'POST', body: 'kept' });
    expect(await temporary.json()).toEqual({ method: 'POST', body: 'kept' });
    await expect(nodeFetch(`${base}/loop`)).rejects.toThrow(/more than 20 redirects \(or a loop\)/);
    await expect(nodeFetch(`${base}/see-other`, { redirect: 'error' })).rejects.toThrow(/redirect: 'error'/);
    const manual = await nodeFetch(`${base}/see-other`, { redirect: 'manual' });
    expect(manual.status).toBe(303);
  });

  it('a redirect to another origin never carries authorization, cookie or proxy-authorization (301, 302, 303, 307, 308)', async () => {
    for (const code of [301, 302, 303, 307, 308]) {
      seenByOther.length = 0;
      const res = await nodeFetch(`${base}/to-other?code=${code}`, {
        method: 'POST',
        headers: {
          authorization: 'Bearer secret',
          cookie: 'session=1',
          'proxy-authorization': 'Basic x',
          'x-kept': 'yes',
          'content-type': 'application/json',
        },
        body: '{"q":1}',
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ other: true, authorization: null });
      expect(seenByOther).toHaveLength(1);
      const headers = seenByOther[0].headers;
      expect(headers.authorization).toBeUndefined();
      expect(headers.cookie).toBeUndefined();
      expect(headers['proxy-authorization']).toBeUndefined();
      expect(headers['x-kept']).toBe('yes');
      // 307/308 keep the method and body; 301/302 (POST) and 303 become a GET without one.
      expect(seenByOther[0].method).toBe(code === 307 || code === 308 ? 'POST' : 'GET');
      expect(seenByOther[0].body).toBe(code === 307 || code === 308 ? '{"q":1}' : '');
    }
  });

  it('a redirect within the origin keeps authorization', async () => {
    const res = await nodeFetch(`${base}/same-origin`, { headers: { authorization: 'Bearer k' } });
    expect(await res.json()).toEqual({ method: 'GET', body: '' });
    const last = seen.at(-1)!;
    expect(last.url).toBe('/json?from=302');
    expect(last.headers.authorization).toBe('Bearer k');
  });

  it('keeps connections alive: 20 sequential requests reuse one or two sockets', async () => {
    const ports = new Set<number>();
    const probe = http.createServer((req, res) => {
      ports.add(req.socket.remotePort!);
      res.end('ok');
    });
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    try {
      const at = `http://127.0.0.1:${(probe.address() as AddressInfo).port}/`;
      for (let i = 0; i < 20; i++) expect(await (await nodeFetch(at)).text()).toBe('ok');
      // Two at most: undici may open a second while the first is still finishing its response.
      expect(ports.size).toBeLessThanOrEqual(2);
    } finally {
      probe.closeAllConnections();
      await new Promise((resolve) => probe.close(resolve));
    }
  });

  it('streams an event stream as it arrives', async () => {
    const res = await nodeFetch(`${base}/events`);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('data: one\n\n');
    let rest = '';
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += new TextDecoder().decode(chunk.value);
    expect(rest).toBe('data: two\n\n');
  });

  it('an abort signal rejects with an AbortError and closes the connection; an aborted signal never sends', async () => {
    const controller = new AbortController();
    const closedBefore = closedEarly;
    const pending = nodeFetch(`${base}/hang`, { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort();
    await expect(pending).rejects.toSatisfy((e: unknown) => (e as Error).name === 'AbortError');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(closedEarly).toBe(closedBefore + 1);
    const before = seen.length;
    await expect(nodeFetch(`${base}/json`, { signal: AbortSignal.abort() })).rejects.toSatisfy(
      (e: unknown) => (e as Error).name === 'AbortError',
    );
    expect(seen.length).toBe(before);
  });

  it('aborting mid-stream errors the body with the reason and closes the connection', async () => {
    const controller = new AbortController();
    const before = closedEarly;
    const res = await nodeFetch(`${base}/events`, { signal: controller.signal });
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: one\n\n');
    controller.abort();
    await expect(reader.read()).rejects.toSatisfy((e: unknown) => (e as Error).name === 'AbortError');
    expect(before).toBe(closedEarly); // /events is not /hang: counted by the server's close below
  });

  it('refuses a protocol it cannot speak, naming it; a refused connection is a TypeError like fetch', async () => {
    await expect(nodeFetch('ftp://127.0.0.1/file')).rejects.toThrow(/unsupported protocol 'ftp:'/);
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await expect(nodeFetch(`http://127.0.0.1:${port}/`)).rejects.toSatisfy(
      (e: unknown) =>
        e instanceof TypeError && e.message === 'fetch failed' && /ECONNREFUSED/.test(String((e.cause as { code?: string })?.code)),
    );
  });
});

describe('createNodeFetch alone (its own Agent)', () => {
  it('an idle keep-alive connection does not keep the process alive (built package, child process)', async () => {
    // The child fetches from this process's server, which stays up with the connection open; the
    // child must still exit on its own (execFile would time out otherwise).
    const script = `import { createNodeFetch } from 'rxserve/llm'; const f = createNodeFetch(); process.stdout.write(await (await f('${base}/json')).text());`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: root, timeout: 20_000 });
    expect(JSON.parse(stdout)).toEqual({ method: 'GET', body: '' });
  });

  it("leaves the process's global fetch on Node's own dispatcher (built package, child process)", async () => {
    // Loading undici installs its Agent as the global dispatcher Node's fetch uses when none is
    // set yet; rxserve's transport must not change what everyone else's fetch goes through.
    const script = [
      "const key = Symbol.for('undici.globalDispatcher.1');",
      "const { createNodeFetch } = await import('rxserve/llm');",
      `const text = await (await createNodeFetch()('${base}/json')).text();`,
      'const afterOurs = globalThis[key];',
      `const viaGlobal = await (await fetch('${base}/json')).text();`,
      "const { Agent } = await import('undici');",
      'process.stdout.write(JSON.stringify({ npmUndici: afterOurs instanceof Agent, unchangedByFetch: globalThis[key] === afterOurs, same: text === viaGlobal }));',
    ].join('\n');
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: root, timeout: 20_000 });
    expect(JSON.parse(stdout)).toEqual({ npmUndici: false, unchangedByFetch: true, same: true });
  });

  it('validates its options, naming the one that is wrong', () => {
    expect(() => createNodeFetch({ maxSockets: 0 })).toThrow(/options\.maxSockets must be a positive integer, got 0/);
    expect(() => createNodeFetch({ keepAliveTimeoutMs: -1 })).toThrow(/options\.keepAliveTimeoutMs must be a non-negative number/);
  });
});

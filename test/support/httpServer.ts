// A real node:http server on a loopback port for the remote-step tests: records each request (method,
// path, headers, body), counts requests in flight at once and sockets opened, and notices requests
// the client aborted. Each test gives the handler; `close()` stops it.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach } from 'vitest';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  /** `performance.now()` when the request's body had arrived. */
  readonly at: number;
}

export type Handler = (request: SeenRequest, res: ServerResponse, n: number) => unknown;

export interface TestServer {
  readonly url: string;
  readonly port: number;
  readonly requests: SeenRequest[];
  /** Requests being handled now, and the most ever at once. */
  readonly inFlight: number;
  readonly maxInFlight: number;
  /** Requests whose client went away before the answer was sent. */
  readonly aborted: number;
  /** TCP connections opened so far, and open now. */
  readonly sockets: number;
  readonly openSockets: number;
  /** Resolves once `aborted` reaches `n` (rejects after `ms`). */
  waitForAborted(n: number, ms?: number): Promise<void>;
  /** Resolves once `requests.length` reaches `n` (rejects after `ms`). */
  waitForRequests(n: number, ms?: number): Promise<void>;
  close(): Promise<void>;
}

/** JSON answer helper. */
export function json(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export async function startServer(handler: Handler): Promise<TestServer> {
  const requests: SeenRequest[] = [];
  const open = new Set<Socket>();
  let inFlight = 0;
  let maxInFlight = 0;
  let aborted = 0;
  let sockets = 0;
  const until = (test: () => boolean, what: string, ms: number) =>
    new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + ms;
      const poll = () => {
        if (test()) return resolve();
        if (Date.now() > deadline) return reject(new Error(`test server: timed out waiting for ${what}`));
        setTimeout(poll, 5);
      };
      poll();
    });
  const server = createServer((req, res) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let answered = false;
    res.once('finish', () => (answered = true));
    res.once('close', () => {
      inFlight--;
      if (!answered) aborted++;
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => {
      const seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
        at: performance.now(),
      };
      requests.push(seen);
      void Promise.resolve()
        .then(() => handler(seen, res, requests.length))
        .catch((error: unknown) => {
          if (!res.headersSent) res.writeHead(599);
          res.end(String(error));
        });
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets++;
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    get aborted() {
      return aborted;
    },
    get sockets() {
      return sockets;
    },
    get openSockets() {
      return open.size;
    },
    waitForAborted: (n, ms = 5_000) => until(() => aborted >= n, `${n} aborted request(s), saw ${aborted}`, ms),
    waitForRequests: (n, ms = 5_000) => until(() => requests.length >= n, `${n} request(s), saw ${requests.length}`, ms),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A suite's loopback servers: `server(handler)` starts one, and every server started since the
 * last test is closed after it (registered with vitest's `afterEach`).
 */
export function serversPerTest(): (handler: Handler) => Promise<TestServer> {
  let servers: TestServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.map((s) => s.close()));
    servers = [];
  });
  return async (handler) => {
    const s = await startServer(handler);
    servers.push(s);
    return s;
  };
}

// EventStream on a real fastify reply (loopback): the frames of one tick are one write, in order,
// and a frame is never held back for a later one.
import { Socket } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { ClientWatch, EventStream, type StreamLimits } from './sse.js';

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

/** The response of the last request served by `serveStream`. */
let lastResponse: { socket: { writableCorked: number } | null } | undefined;

/** Serves GET / with `handler` writing on an EventStream; counts the response's `write` calls. */
async function serveStream(
  handler: (stream: EventStream) => void,
  limits?: StreamLimits,
): Promise<{ url: string; writes: string[]; connections: { opened: number; closed: number } }> {
  const writes: string[] = [];
  const connections = { opened: 0, closed: 0 };
  app = Fastify();
  app.server.on('connection', (socket: import('node:net').Socket) => {
    connections.opened++;
    socket.once('close', () => connections.closed++);
  });
  app.get('/', (_request, reply) => {
    const raw = reply.raw;
    lastResponse = raw;
    const write = raw.write.bind(raw) as (chunk: unknown, ...rest: unknown[]) => boolean;
    raw.write = ((chunk: unknown, ...rest: unknown[]) => {
      writes.push(String(chunk));
      return write(chunk, ...rest);
    }) as typeof raw.write;
    const stream = new EventStream(reply, limits);
    handler(stream);
    return stream.send(': open\n\n', false);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/`, writes, connections };
}

const frame = (n: number) => `data: ${n}\n\n`;
const numbers = (text: string) => [...text.matchAll(/^data: (\d+)$/gm)].map((m) => Number(m[1]));

describe('EventStream', () => {
  it('writes the frames of one tick as one write, in order; the stream ends with the rest', async () => {
    const { url, writes } = await serveStream((stream) => {
      setTimeout(() => {
        for (let n = 1; n <= 500; n++) stream.write(frame(n)); // one burst, one tick
        setTimeout(() => {
          // a burst made of promise jobs (as an async iterator's chunks are): still one tick
          void (async () => {
            for (let n = 501; n <= 600; n++) {
              await Promise.resolve();
              stream.write(frame(n));
            }
            stream.write(frame(601));
            stream.end(frame(602));
          })();
        }, 5);
      }, 5);
    });
    const text = await (await fetch(url)).text();
    expect(numbers(text)).toEqual(Array.from({ length: 602 }, (_, i) => i + 1));
    const frameWrites = writes.filter((w) => w.includes('data: '));
    // The first frame at once (the first token waits for nothing), 2..500 in one write; 501..601,
    // still queued when the stream ends, go with the last frame in `end` (not a `write`).
    expect(frameWrites.map(numbers).map((ns) => [ns[0], ns.at(-1)])).toEqual([
      [1, 1],
      [2, 500],
    ]);
  });

  it('writes the first data frame to the response at once, even inside a run of promise jobs', async () => {
    const seenAtOnce: boolean[] = [];
    const { url, writes } = await serveStream((stream) => {
      setTimeout(() => {
        // An async iterator's buffered chunks: one promise job after another, no tick in between.
        void (async () => {
          for (let n = 1; n <= 50; n++) {
            await Promise.resolve();
            stream.write(frame(n));
            // Written, and not held in node:http's cork of the socket until the next tick.
            if (n === 1) seenAtOnce.push(writes.some((w) => numbers(w).includes(1)) && lastResponse?.socket?.writableCorked === 0);
          }
          stream.end(frame(51));
        })();
      }, 5);
    });
    const text = await (await fetch(url)).text();
    expect(numbers(text)).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
    expect(seenAtOnce).toEqual([true]);
    // Alone: the comment sent when the stream opened went out in its own tick, 5 ms before.
    expect(writes.find((w) => numbers(w).includes(1))).toBe('data: 1\n\n');
  });

  it('does not hold a frame back until the stream ends: the client sees it while the stream is open', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const { url } = await serveStream((stream) => {
      setTimeout(() => {
        stream.write(frame(1));
        stream.write(frame(2));
        // the stream ends only once the client has seen both frames (else the test times out)
        void released.then(() => stream.end(frame(3)));
      }, 5);
    });
    const reader = (await fetch(url)).body!.getReader();
    const decoder = new TextDecoder();
    let seen = '';
    while (numbers(seen).length < 2) seen += decoder.decode((await reader.read()).value as Uint8Array | undefined, { stream: true });
    expect(numbers(seen)).toEqual([1, 2]);
    release();
    for (let r = await reader.read(); !r.done; r = await reader.read()) seen += decoder.decode(r.value as Uint8Array, { stream: true });
    expect(numbers(seen)).toEqual([1, 2, 3]);
  });

  it('a frame queued when the stream ends goes out before the last one; nothing is written after the end', async () => {
    const { url, writes } = await serveStream((stream) => {
      setTimeout(() => {
        stream.write(frame(1));
        stream.end(frame(2));
        stream.write(frame(3)); // after the end: dropped
      }, 5);
    });
    const text = await (await fetch(url)).text();
    expect(numbers(text)).toEqual([1, 2]);
    expect(writes.join('')).not.toContain('data: 3');
  });

  it('a client that reads a burst larger than the connection takes at once is not cut: the watch ends with the answer', async () => {
    const big = 'x'.repeat(64 * 1024);
    const { url, connections } = await serveStream(
      (stream) => {
        setTimeout(() => {
          // 8 MiB in one tick: one write the socket cannot take at once (the stall watch is armed)
          for (let n = 1; n <= 128; n++) stream.write(`data: ${n} ${big}\n\n`);
          setTimeout(() => stream.end(frame(129)), 5);
        }, 5);
      },
      // Time enough to read 8 MiB on a busy machine: the client must catch up within it.
      { sendTimeoutMs: 1_000, maxBufferBytes: 64 * 1024 * 1024 },
    );
    const text = await (await fetch(url)).text();
    expect(text.length).toBeGreaterThan(128 * big.length);
    expect([...text.matchAll(/^data: (\d+)/gm)].map((m) => Number(m[1]))).toEqual(Array.from({ length: 129 }, (_, i) => i + 1));
    // Past sendTimeoutMs after the answer: its kept-alive connection is still open, and serves the next.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    expect(connections).toEqual({ opened: 1, closed: 0 });
    expect(lastResponse).toBeDefined();
    const raw = lastResponse as unknown as import('node:http').ServerResponse;
    expect(raw.writableFinished).toBe(true);
    expect(raw.listenerCount('drain')).toBe(0);
    await (await fetch(url)).text();
    expect(connections.opened).toBe(1);
  });
});

describe('ClientWatch', () => {
  /** A reply on `socket` as ClientWatch reads it. */
  const replyOn = (socket: Socket) => ({ raw: { socket } }) as unknown as FastifyReply;

  it('one connection, several watches: those done are not cancelled when it closes, the others all are, each once', () => {
    const socket = new Socket();
    const cancelled: string[] = [];
    const watches = ['a', 'b', 'c', 'd'].map((name) => {
      const watch = new ClientWatch(replyOn(socket));
      watch.watch(() => cancelled.push(name));
      return watch;
    });
    watches[1].done(); // in the middle of the list
    watches[3].done(); // its head
    socket.emit('close');
    expect(cancelled.sort()).toEqual(['a', 'c']);
    expect(watches.map((w) => w.gone)).toEqual([true, false, true, false]);
    socket.emit('close');
    expect(cancelled.length).toBe(2);
  });

  it('a cancel that ends another watch of the connection while it closes: that one is not cancelled, the rest are', () => {
    const socket = new Socket();
    const cancelled: string[] = [];
    const [a, b, c] = [0, 1, 2].map(() => new ClientWatch(replyOn(socket)));
    // The head is c (the newest): its cancel ends b.
    c.watch(() => {
      cancelled.push('c');
      b.done();
    });
    b.watch(() => cancelled.push('b'));
    a.watch(() => cancelled.push('a'));
    socket.emit('close');
    expect(cancelled).toEqual(['c', 'a']);
    // A watch made after the close on a destroyed socket is gone from the start.
    socket.destroy();
    const late = new ClientWatch(replyOn(socket));
    expect(late.gone).toBe(true);
  });
});

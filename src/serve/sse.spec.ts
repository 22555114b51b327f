// EventStream on a real fastify reply (loopback): the frames of one tick are one write, in order,
// and a frame is never held back for a later one.
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { EventStream } from './sse.js';

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

/** The response of the last request served by `serveStream`. */
let lastResponse: { socket: { writableCorked: number } | null } | undefined;

/** Serves GET / with `handler` writing on an EventStream; counts the response's `write` calls. */
async function serveStream(handler: (stream: EventStream) => void): Promise<{ url: string; writes: string[] }> {
  const writes: string[] = [];
  app = Fastify();
  app.get('/', (_request, reply) => {
    const raw = reply.raw;
    lastResponse = raw;
    const write = raw.write.bind(raw) as (chunk: unknown, ...rest: unknown[]) => boolean;
    raw.write = ((chunk: unknown, ...rest: unknown[]) => {
      writes.push(String(chunk));
      return write(chunk, ...rest);
    }) as typeof raw.write;
    const stream = new EventStream(reply);
    handler(stream);
    return stream.send(': open\n\n', false);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/`, writes };
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
});

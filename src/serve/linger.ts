// A lingering close for refused requests: the answer first, then the client's last bytes drained.
import type { Socket } from 'node:net';

/** The most a refused client's connection stays open after its answer, while it is still sending. */
export const LINGER_MS = 2_000;

/**
 * Makes the connection of a refused request (401, 413, 415: answered before its body was read)
 * close the way nginx's `lingering_close` does. node:http ends such a connection with
 * `socket.destroySoon()` once the answer is written; a socket closed with the client's body still
 * arriving is reset, and the reset can reach the client before it reads the answer: an honest
 * client sending too large a body saw ECONNRESET, not its 413. So: the answer, then end of
 * writing (the client reads EOF after it), then what the client still sends is read and dropped
 * until it closes its side or `LINGER_MS` pass — a bound, so a hostile client cannot keep the
 * socket by going on sending.
 */
export function lingerOnClose(socket: Socket | null | undefined): void {
  if (socket == null || socket.destroyed) return;
  socket.destroySoon = function lingeringClose(this: Socket) {
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
    this.once('end', () => this.destroy());
    this.end();
    this.resume();
  };
}

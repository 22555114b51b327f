// A JSON answer the client does not read: its connection is closed after sendTimeoutMs.
import type { FastifyReply } from 'fastify';
import { RxServeError } from '../errors.js';

/** setTimeout takes at most 2^31 - 1 ms (24.8 days); past that it would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Called once an answer was given to `reply.send`: if the connection has not taken all of it (the
 * client does not read), the client has `sendTimeoutMs` to read the rest, or its connection is
 * destroyed. Node would otherwise keep the socket and the unsent part of the answer for as long
 * as the client keeps the connection: no socket timeout covers a connection busy writing. Nothing
 * is armed when the answer went out at once (a getter read per answer); the timer is cleared when
 * the answer is all sent or the connection closes. The app's async `onSend` hooks may still hold
 * the answer when the timer fires (the response not ended yet): that time is not the client's,
 * so the timer starts again, and the client has at least `sendTimeoutMs` once the answer is
 * written.
 */
export function closeIfUnread(reply: FastifyReply, sendTimeoutMs: number): void {
  const raw = reply.raw;
  if (raw.writableFinished || raw.destroyed || sendTimeoutMs === Infinity) return;
  const ms = Math.min(sendTimeoutMs, MAX_TIMER_MS);
  const settled = (): void => {
    clearTimeout(timer);
    raw.off('finish', settled).off('close', settled);
  };
  const expired = (): void => {
    if (!raw.writableEnded) {
      timer = setTimeout(expired, ms);
      return;
    }
    settled();
    const error = new RxServeError(
      `the client did not read its answer: ${raw.writableLength} bytes were still unsent after ${sendTimeoutMs} ms (sendTimeoutMs); its connection was closed`,
    );
    reply.log.warn({ err: error }, 'rxserve: answer cut');
    raw.destroy();
  };
  let timer = setTimeout(expired, ms);
  raw.on('finish', settled).on('close', settled);
}

import { firstValueFrom, type Observable } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { PredictContext } from '../model/model.js';
import { PooledSession, type BatchTransport, type SentBatch } from './pooled.js';
import type { WireBatch, WireResult } from './wire/protocol.js';

/**
 * A transport that answers every batch at once, in process: each batch call gets `reply(batch)`
 * as the worker's list for it (`[1, value, 1, value, ...]`, as ModelHost answers a batch call).
 */
function answering(replies: unknown[][]): BatchTransport {
  return {
    canSend: () => true,
    slots: 2,
    workerKind: 'thread',
    send(batch: WireBatch): SentBatch {
      const results: WireResult[] = batch.calls.map((call) => {
        const inputs = call.input as unknown[];
        const flat = inputs.flatMap((input) => [1, { echoed: input }]);
        replies.push(flat);
        return { ok: true, value: flat };
      });
      return { done: Promise.resolve(results), cancel: () => undefined, terminate: () => undefined };
    },
    close: () => Promise.resolve(),
  };
}

const context = (eventId: string): PredictContext => ({ eventId, origin: 'test', path: '/', signal: new AbortController().signal });

describe('PooledSession', () => {
  it("empties a batch call's reply list once its answers went out (an old-space list must not keep them alive)", async () => {
    const replies: unknown[][] = [];
    const spec = JSON.stringify({ module: '/nowhere.js', export: 'M' });
    const session = new PooledSession(new Map([['m', spec]]), answering(replies), { maxBatch: 8, cancelGraceMs: 100 }, (input) => ({
      input,
      transfer: [],
    }));
    const answers = await firstValueFrom(session.invokeBatch('m', ['a', 'b'], [context('1'), context('2')]) as Observable<unknown>);
    // Every answer arrived whole...
    expect(answers).toEqual([{ echoed: 'a' }, { echoed: 'b' }]);
    // ...and the worker's list that carried them no longer holds them.
    expect(replies).toHaveLength(1);
    expect(replies[0]).toEqual([]);
    await session.close();
  });
});

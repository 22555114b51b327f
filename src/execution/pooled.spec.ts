import { firstValueFrom, type Observable } from 'rxjs';
import { WorkerCrashedError } from '../errors.js';
import { describe, expect, it } from 'vitest';
import type { PredictContext } from '../model/model.js';
import { PooledSession, type BatchReceiver, type BatchTransport, type SentBatch } from './pooled.js';
import type { WireBatch } from './wire/protocol.js';

/**
 * A transport that answers every batch at once, in process: each batch call gets `reply(batch)`
 * as the worker's list for it (`[1, value, 1, value, ...]`, as ModelHost answers a batch call).
 */
function answering(replies: unknown[][]): BatchTransport {
  return {
    canSend: () => true,
    slots: 2,
    workerKind: 'thread',
    send(batch: WireBatch, _transfer, receiver): SentBatch {
      const reply = batch.calls.flatMap((call) => {
        const inputs = call.input as unknown[];
        const flat = inputs.flatMap((input) => [1, { echoed: input }]);
        replies.push(flat);
        return [1, flat];
      });
      queueMicrotask(() => receiver.answered(reply));
      return { cancel: () => undefined, terminate: () => undefined };
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

  it('a single call goes alone, gets its own answer or error, and holds its one slot until its worker answers', async () => {
    // One slot: a slot a call kept would leave every later call unsent.
    const sent: { batch: WireBatch; receiver: BatchReceiver; cancelled: number[] }[] = [];
    const transport: BatchTransport = {
      canSend: () => true,
      slots: 1,
      workerKind: 'thread',
      send(batch, _transfer, receiver): SentBatch {
        const entry = { batch, receiver, cancelled: [] as number[] };
        sent.push(entry);
        return { cancel: (id) => entry.cancelled.push(id), terminate: () => undefined };
      },
      close: () => Promise.resolve(),
    };
    const spec = JSON.stringify({ module: '/nowhere.js', export: 'M' });
    const session = new PooledSession(new Map([['m', spec]]), transport, { maxBatch: 8, cancelGraceMs: 60_000 }, (input) => ({
      input,
      transfer: [],
    }));
    const outcome = (input: string) => {
      const seen: { value?: unknown; error?: unknown; completed: boolean } = { completed: false };
      const subscription = (session.invoke('m', input, context(input)) as Observable<unknown>).subscribe({
        next: (value) => (seen.value = value),
        error: (error: unknown) => (seen.error = error),
        complete: () => (seen.completed = true),
      });
      return { seen, subscription };
    };
    const settle = () => new Promise((resolve) => setImmediate(resolve));

    // A value: its own, for its own call.
    const a = outcome('a');
    expect(sent).toHaveLength(1);
    expect(sent[0].batch.calls.map((c) => c.input)).toEqual(['a']);
    expect(sent[0].batch.specs).toEqual([spec]);
    sent[0].receiver.answered([1, 'A']);
    expect(a.seen).toEqual({ value: 'A', completed: true });

    // A worker's error: rebuilt, for its call only.
    const b = outcome('b');
    expect(sent).toHaveLength(2);
    sent[1].receiver.answered([0, { name: 'RangeError', message: 'b is out of range' }]);
    expect(b.seen.error).toBeInstanceOf(RangeError);
    expect((b.seen.error as Error).message).toBe('b is out of range');

    // Cancelled in its worker: the worker is asked to stop it, and its slot stays taken until the
    // worker answers, so the next call waits, then goes.
    const c = outcome('c');
    const cId = sent[2].batch.calls[0].id;
    c.subscription.unsubscribe();
    expect(sent[2].cancelled).toEqual([cId]);
    const d = outcome('d');
    expect(sent).toHaveLength(3);
    sent[2].receiver.answered([1, 'C']);
    await settle();
    expect(c.seen).toEqual({ completed: false });
    expect(sent).toHaveLength(4);
    expect(sent[3].batch.calls.map((x) => x.input)).toEqual(['d']);

    // A reply without an answer for the call: it fails, and the slot is freed.
    sent[3].receiver.answered([]);
    expect(d.seen.error).toBeInstanceOf(WorkerCrashedError);

    // The worker died: WorkerCrashedError, and the slot is freed again.
    const e = outcome('e');
    expect(sent).toHaveLength(5);
    sent[4].receiver.failed(new WorkerCrashedError('worker thread died'));
    expect(e.seen.error).toBeInstanceOf(WorkerCrashedError);
    const f = outcome('f');
    expect(sent).toHaveLength(6);
    sent[5].receiver.answered([1, 'F']);
    expect(f.seen).toEqual({ value: 'F', completed: true });
    await session.close();
  });
});

// The child-process entry for 'process_pool' and 'dedicated_process': a message loop over IPC.
import { cancelledReason, ModelHost } from './modelHost.js';
import { serializeError, type SerializedError, type WireBatch, type WireResult } from '../wire/protocol.js';

/** Messages from the parent. */
export type ToChild =
  | { readonly type: 'load'; readonly key: string }
  | { readonly type: 'run'; readonly batchId: number; readonly batch: WireBatch }
  | { readonly type: 'cancel'; readonly id: number }
  | { readonly type: 'close' };

/** Messages to the parent. */
export type ToParent =
  | { readonly type: 'loaded'; readonly key: string }
  | { readonly type: 'loadFailed'; readonly key: string; readonly error: SerializedError }
  | { readonly type: 'results'; readonly batchId: number; readonly results: WireResult[] }
  | { readonly type: 'partial'; readonly id: number; readonly data: unknown }
  | { readonly type: 'closed' };

const send = (message: ToParent): void => {
  if (process.connected) process.send!(message);
};
// Partials go on the same channel as results, so they arrive before their call's result.
const host = new ModelHost('process', (id, data) => {
  try {
    send({ type: 'partial', id, data });
  } catch {
    /* a partial that cannot be serialized is dropped; the call goes on */
  }
});

process.on('message', (message: ToChild) => {
  switch (message.type) {
    case 'load':
      host.get(message.key).then(
        () => send({ type: 'loaded', key: message.key }),
        (error: unknown) => send({ type: 'loadFailed', key: message.key, error: serializeError(error) }),
      );
      break;
    case 'run':
      void host.run(message.batch).then((results) => send({ type: 'results', batchId: message.batchId, results }));
      break;
    case 'cancel':
      host.cancel(message.id, cancelledReason());
      break;
    case 'close':
      void host.close().then(() => {
        send({ type: 'closed' });
        process.disconnect();
      });
      break;
  }
});

// The parent is gone (it exited or closed the channel): nothing will read our results.
process.on('disconnect', () => {
  void host.close().finally(() => process.exit(0));
});

// runBatch(): one session call for a lane unit of several calls, its results settled call by call.
import { toError } from '../errors.js';
import type { PredictContext } from '../model/model.js';
import { onResult } from './callResult.js';
import type { CallResult, ExecutorSession } from './executor.js';
import type { Lane, LaneCall, LaneUnit } from './lane.js';

/**
 * Makes one `invokeBatch` call for `calls` and settles each call with its element: a value, or
 * its own error for an `Error` element; a throw or a result that is not one element per call
 * fails them all. A call cancelled or timed out by the lane settles alone; the batch is cancelled
 * only when none of its calls still wants it. The unit's slot stays taken until the batch answers.
 * `calls` is emptied once every call has its outcome (see `Lane.unitMaybeDone` for why).
 */
export function runBatch<C extends LaneCall>(
  name: string,
  lane: Lane<C>,
  unit: LaneUnit,
  calls: readonly C[],
  inputs: readonly unknown[],
  contexts: readonly PredictContext[],
  invoke: (inputs: readonly unknown[], contexts: readonly PredictContext[]) => CallResult,
): void {
  const release = unit.hold();
  let live = calls.length;
  let cancelBatch: (() => void) | undefined;
  let finished = false;
  const finish = (): void => {
    finished = true;
    release();
  };
  // A throw before the batch is under way (from `invoke` or a settled hook) releases the hold; the
  // lane then fails the calls still open, so nothing keeps the slot.
  try {
    cancelBatch = startBatch();
  } catch (error) {
    if (!finished) finish();
    throw error;
  }
  if (finished) return;
  // One canceller for the whole batch, not a closure per call: the lane calls a call's
  // `cancelWork` at most once, so each call counts itself out once.
  const cancelOne = (): void => {
    if (--live === 0 && cancelBatch) {
      const cancel = cancelBatch;
      cancelBatch = undefined;
      cancel();
      finish();
    }
  };
  for (let i = 0; i < calls.length; i++) if (!calls[i].done) calls[i].cancelWork = cancelOne;

  function startBatch(): (() => void) | undefined {
    return onResult(
      () => invoke(inputs, contexts),
      (values) => {
        finish();
        if (!Array.isArray(values) || values.length !== calls.length) {
          const error = new TypeError(
            `a batch of ${calls.length} calls of '${name}' got ${Array.isArray(values) ? `${values.length} results` : typeof values} instead of one result per call`,
          );
          for (let i = 0; i < calls.length; i++) lane.settle(calls[i], undefined, error);
          forget(calls);
          return;
        }
        // By index: the lane empties its unit's list (which `calls` may be) once the last call settled.
        for (let i = 0; i < calls.length; i++) {
          const value: unknown = values[i];
          if (value instanceof Error) lane.settle(calls[i], undefined, value);
          else lane.settle(calls[i], value, undefined);
        }
        forget(calls);
      },
      (error) => {
        finish();
        const failure = toError(error);
        for (let i = 0; i < calls.length; i++) lane.settle(calls[i], undefined, failure);
        forget(calls);
      },
    );
  }
}

/**
 * Empties a batch's list of calls once they all settled: the list may be the lane unit's own
 * (emptied by the lane too) or the owner's, and an old-space one must not keep them alive.
 */
function forget(calls: readonly LaneCall[]): void {
  (calls as LaneCall[]).length = 0;
}

/** Whether a session can take a unit of several calls as one batch. */
export const batches = (session: ExecutorSession): boolean => typeof session.invokeBatch === 'function';

// How the batches of a built-in model class cross a worker boundary (OnnxModel: tensors as
// TypedArrays): light enough for the worker entries, which must not load the classes themselves.
import { WIRE_BATCH, outputTransfer, packBatch, unpackBatch } from '../../onnx/wire.js';

/**
 * How the batches of a built-in class cross a worker boundary in a form cheaper than its JSON
 * (OnnxModel: tensors as TypedArrays). Both sides find it from the spec, so they always agree.
 */
export interface WireCodec {
  /**
   * Main side: bodies to send instead (`undefined`: send that one as it is; a number: a row of
   * `table`, which then goes as the list's last element) and buffers to transfer.
   */
  // eslint-disable-next-line @typescript-eslint/no-redundant-type-constituents -- `| undefined` says what an element means (above)
  pack(bodies: readonly unknown[]): { bodies: (unknown | undefined)[]; transfer: ArrayBuffer[]; table?: unknown };
  /**
   * Worker side: the model's method to call instead of `predictBatch`, with the input list as the
   * main side sent it (`pack`'s form) and the calls' contexts on demand:
   * `(list, contexts: () => PredictContext[]) => outputs`, one per call.
   */
  readonly batch: symbol;
  /** Worker side: the buffers of the wire method's outputs to transfer back (pushed to `transfer`). */
  outputTransfer(outputs: readonly unknown[], transfer: ArrayBuffer[]): void;
  /** Main side: the outputs of a batch from the worker (`undefined`: a failed call), in the model's contract form, in place. */
  unpackBatch(outputs: unknown[]): void;
  /**
   * Whether the wire method reads its calls' contexts. When it does not, a batch's contexts stay
   * on the main side (its wire call carries the input count, `WireCall.batch`): no event id,
   * origin or path of every input is copied to the worker and back into strings there, and no
   * partial can come (a model emits through its context).
   */
  readonly readsContexts: boolean;
}

const BUILT_IN_WIRE: ReadonlyMap<string, WireCodec> = new Map([
  ['OnnxModel', { pack: packBatch, batch: WIRE_BATCH, outputTransfer, unpackBatch, readsContexts: false }],
]);

const codecs = new Map<string, WireCodec | undefined>();

/** The wire codec of a worker spec key (JSON of a WorkerModelSpec): built-in classes only. */
export function wireCodec(specKey: string): WireCodec | undefined {
  if (codecs.has(specKey)) return codecs.get(specKey);
  const spec = JSON.parse(specKey) as { module?: unknown; export?: unknown };
  const codec = spec.module === null && typeof spec.export === 'string' ? BUILT_IN_WIRE.get(spec.export) : undefined;
  codecs.set(specKey, codec);
  return codec;
}

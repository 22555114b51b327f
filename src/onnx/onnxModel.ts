// OnnxModel: a built-in model class over onnxruntime-node with Open Inference Protocol tensors.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ModelLoadError, toError } from '../errors.js';
import type { ModelArtifact } from '../model/artifact.js';
import { Model, type ModelInit, type ModelMetadata, type PredictContext } from '../model/model.js';
import { OIP_DATATYPE, ORT_TYPE, type OipDatatype } from './datatypes.js';
import { inPoolWorker, loadRuntime, type OrtRuntime, type OrtSession, type OrtTensor } from './runtime.js';
import { checkRequest, oipData, type CheckedInput, type ExpectedInput, type OipTensor } from './tensor.js';
import { WIRE_BATCH, type WireRows } from './wire.js';

/** An Open Inference Protocol inference request (`/v2/models/<m>/infer` body). */
export interface OnnxRequest {
  readonly inputs: readonly OipTensor[];
  readonly [field: string]: unknown;
}

/** Its response: every model output, in the model's order, with flat JSON data. */
export interface OnnxResponse {
  readonly model_name: string;
  readonly outputs: OipTensor[];
}

/**
 * Serves a `.onnx` model on onnxruntime-node (an optional peer dependency, imported when the
 * model loads, in the thread or process that loads it).
 *
 * The model file comes from `modelArtifact.modelUrl` (a `file:` URL) or `params.modelPath`;
 * `params.sessionOptions` go to `InferenceSession.create` (on pool mechanisms
 * `intraOpNumThreads` defaults to 1). Inputs and outputs are Open Inference Protocol tensors
 * (docs/design.md §13); with `batching` on its entry, calls are concatenated along the first dimension
 * and run once.
 *
 * ## Example
 * ```ts
 * import { modelRunner } from 'rxserve';
 * modelRunner({ models: [{ endpointName: 'mlp', modelClass: 'OnnxModel', executionMechanism: 'thread_pool',
 *   params: { modelPath: '/models/mlp.onnx' }, batching: { maxBatchSize: 32, maxWaitMs: 2 } }] });
 * // { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }
 * // → { model_name: 'mlp', outputs: [{ name: 'y', shape: [1, 2], datatype: 'FP32', data: [...] }] }
 * ```
 */
export class OnnxModel extends Model<OnnxRequest, OnnxResponse> {
  #ort: OrtRuntime | undefined;
  #session: OrtSession | undefined;
  #inputs: ExpectedInput[] = [];
  #outputs: { name: string }[] = [];
  /** The outputs as the V2 `metadata` operation tells them: names, OIP datatypes and shapes when onnxruntime knows them. */
  #outputMetadata: { name: string; datatype?: OipDatatype; shape?: number[] }[] = [];
  /** Every input's first dimension is symbolic: calls can be concatenated along it. */
  #batchable = false;

  constructor(init: ModelInit) {
    super(init);
  }

  /** The model file's path, from the artifact's `file:` URL or `params.modelPath`. */
  get modelPath(): string {
    const url = (this.artifact as ModelArtifact | undefined)?.modelUrl;
    const path = this.params.modelPath;
    if (typeof path === 'string' && path.length > 0) return path;
    if (typeof url === 'string' && url.startsWith('file:')) return fileURLToPath(url);
    throw new ModelLoadError(
      this.name,
      `OnnxModel needs params.modelPath or a modelArtifact whose modelUrl is a file: URL (got ${url === undefined ? 'neither' : `modelUrl '${url}'`})`,
    );
  }

  override async load(): Promise<void> {
    const path = this.modelPath;
    if (!existsSync(path)) throw new ModelLoadError(this.name, `the ONNX model file '${path}' does not exist`);
    this.#ort = await loadRuntime().catch((error: unknown) => {
      throw new ModelLoadError(this.name, toError(error).message, { cause: error });
    });
    const options = {
      ...(inPoolWorker() ? { intraOpNumThreads: 1 } : {}),
      ...((this.params.sessionOptions as Record<string, unknown> | undefined) ?? {}),
    };
    try {
      this.#session = await this.#ort.InferenceSession.create(path, options);
    } catch (cause) {
      throw new ModelLoadError(this.name, `onnxruntime could not load '${path}': ${toError(cause).message}`, { cause });
    }
    const session = this.#session;
    this.#inputs = session.inputMetadata.map((m) => {
      const datatype = m.isTensor ? OIP_DATATYPE[m.type ?? ''] : undefined;
      if (datatype === undefined)
        throw new ModelLoadError(
          this.name,
          `input '${m.name}' of '${path}' is ${m.isTensor ? `a ${m.type} tensor` : 'not a tensor'}, which OnnxModel cannot feed`,
        );
      return { name: m.name, datatype, shape: (m.shape ?? []).map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) };
    });
    this.#outputs = session.outputNames.map((name) => ({ name }));
    // onnxruntime < 1.20 has no outputMetadata: the names alone then.
    const outputMetadata = session.outputMetadata as readonly (typeof session.outputMetadata)[number][] | undefined;
    this.#outputMetadata = session.outputNames.map((name) => {
      const m = outputMetadata?.find((o) => o.name === name);
      const datatype = m?.isTensor ? OIP_DATATYPE[m.type ?? ''] : undefined;
      return datatype === undefined
        ? { name }
        : { name, datatype, shape: (m!.shape ?? []).map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) };
    });
    this.#batchable = this.#inputs.length > 0 && this.#inputs.every((i) => i.shape.length > 0 && i.shape[0] === -1);
  }

  /** What the model expects: its inputs' names, OIP datatypes and shapes (`-1`: any size). */
  get inputs(): readonly ExpectedInput[] {
    return this.#inputs;
  }

  /** Its inputs and outputs for the V2 `metadata` operation: `{ name, datatype, shape }` (`-1`: any size). */
  override metadata(): ModelMetadata {
    return {
      inputs: this.#inputs.map(({ name, datatype, shape }) => ({ name, datatype, shape: [...shape] })),
      outputs: this.#outputMetadata.map((o) => ({ ...o, ...(o.shape ? { shape: [...o.shape] } : {}) })),
    };
  }

  override async predict(body: OnnxRequest, _ctx: PredictContext): Promise<OnnxResponse> {
    const outputs = await this.#run(checkRequest(this.name, body, this.#inputs));
    return {
      model_name: this.name,
      outputs: outputs.map((o) => ({ name: o.name, shape: [...o.dims], datatype: o.datatype, data: oipData(o.datatype, o.data) })),
    };
  }

  /**
   * Concatenates the calls' inputs along the first dimension, runs the model once and splits
   * its outputs; a call whose input is wrong fails alone. Models whose first dimension is fixed
   * (or whose outputs do not keep it) run call by call.
   */
  override async predictBatch(bodies: readonly OnnxRequest[], _ctxs: readonly PredictContext[]): Promise<(OnnxResponse | Error)[]> {
    return this.#batch(bodies, true);
  }

  /**
   * @internal In a pool worker: `predictBatch` in the wire form of `wire.ts` — output `data` left
   * as onnxruntime's TypedArrays (views of the batch's output) and, after the first call of a
   * batch, each call's outputs as `[rows, ...data]` only; the main side rebuilds the responses
   * (`unpackBatch`). A subclass that overrides `predictBatch` is called as it is.
   */
  [WIRE_BATCH](
    bodies: readonly OnnxRequest[],
    ctxs: readonly PredictContext[],
  ): Promise<(OnnxResponse | WireRows | Error)[]> | (OnnxResponse | Error)[] {
    if (this.predictBatch !== OnnxModel.prototype.predictBatch) return this.predictBatch(bodies, ctxs);
    return this.#batch(bodies, false);
  }

  async #batch(bodies: readonly OnnxRequest[], plain: true): Promise<(OnnxResponse | Error)[]>;
  async #batch(bodies: readonly OnnxRequest[], plain: false): Promise<(OnnxResponse | WireRows | Error)[]>;
  async #batch(bodies: readonly OnnxRequest[], plain: boolean): Promise<(OnnxResponse | WireRows | Error)[]> {
    const results: (OnnxResponse | WireRows | Error)[] = new Array<OnnxResponse | WireRows | Error>(bodies.length);
    const checked: { index: number; inputs: CheckedInput[] }[] = [];
    bodies.forEach((body, index) => {
      try {
        checked.push({ index, inputs: checkRequest(this.name, body, this.#inputs) });
      } catch (error) {
        results[index] = toError(error);
      }
    });
    if (checked.length > 1 && this.#batchable && sameTails(checked)) {
      const merged = this.#inputs.map((_, k) => concat(checked.map((c) => c.inputs[k])));
      const rows = checked.map((c) => c.inputs[0].dims[0]);
      const total = merged[0].dims[0];
      const outputs = await this.#run(merged);
      if (outputs.every((o) => o.dims.length > 0 && o.dims[0] === total)) {
        const parts = outputs.map((o) => split(o, rows, total, plain));
        checked.forEach((c, n) => {
          // The first call of the batch carries the names, datatypes and shapes for the main side.
          results[c.index] =
            plain || n === 0
              ? {
                  model_name: this.name,
                  outputs: parts.map((p) => ({ name: p.name, shape: [rows[n], ...p.tail], datatype: p.datatype, data: p.data[n] })),
                }
              : [rows[n], ...parts.map((p) => p.data[n])];
        });
        return results;
      }
    }
    await Promise.all(
      checked.map(async (c) => {
        try {
          const outputs = await this.#run(c.inputs);
          results[c.index] = {
            model_name: this.name,
            outputs: outputs.map((o) => ({
              name: o.name,
              shape: [...o.dims],
              datatype: o.datatype,
              data: plain ? oipData(o.datatype, o.data) : o.data,
            })),
          };
        } catch (error) {
          results[c.index] = toError(error);
        }
      }),
    );
    return results;
  }

  /** One session run; its outputs in the model's order, as onnxruntime gives them. */
  async #run(inputs: readonly CheckedInput[]): Promise<RawOutput[]> {
    const ort = this.#ort;
    const session = this.#session;
    if (ort === undefined || session === undefined) throw new ModelLoadError(this.name, 'the model is not loaded');
    const feeds: Record<string, OrtTensor> = {};
    for (const input of inputs) feeds[input.name] = new ort.Tensor(ORT_TYPE[input.datatype], input.data, input.dims);
    const out = await session.run(feeds);
    return this.#outputs.map(({ name }) => {
      const datatype = OIP_DATATYPE[out[name].type];
      if (datatype === undefined)
        throw new TypeError(`output '${name}' has type '${out[name].type}', which the Open Inference Protocol cannot carry`);
      return { name, datatype, dims: out[name].dims, data: out[name].data };
    });
  }

  override async close(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    await session?.release();
  }
}

/** An output as onnxruntime gave it. */
interface RawOutput {
  readonly name: string;
  readonly datatype: OipDatatype;
  readonly dims: readonly number[];
  readonly data: ArrayLike<unknown>;
}

/** Every call's inputs have the same dimensions after the first as the first call's. */
function sameTails(checked: readonly { inputs: CheckedInput[] }[]): boolean {
  const first = checked[0].inputs;
  for (const c of checked) {
    for (let k = 0; k < first.length; k++) {
      const a = c.inputs[k].dims;
      const b = first[k].dims;
      if (a.length !== b.length) return false;
      for (let d = 1; d < a.length; d++) if (a[d] !== b[d]) return false;
    }
  }
  return true;
}

type Typed = ArrayLike<unknown> & {
  readonly buffer: ArrayBufferLike;
  readonly byteOffset: number;
  readonly byteLength: number;
  set(a: ArrayLike<unknown>, o: number): void;
};
type TypedCtor = { new (n: number): Typed; new (buffer: ArrayBufferLike, byteOffset: number, length: number): Typed };

/**
 * Inputs of several calls as one, along the first dimension. Views that already lie one after
 * another in one buffer (a batch packed on the main thread, see wire.ts) are taken as one view.
 */
function concat(parts: readonly CheckedInput[]): CheckedInput {
  const first = parts[0];
  let length = 0;
  let rows = 0;
  for (const p of parts) {
    length += p.data.length;
    rows += p.dims[0];
  }
  const dims = [rows, ...first.dims.slice(1)];
  if (Array.isArray(first.data)) return { ...first, dims, data: parts.flatMap((p) => p.data as unknown[]) };
  const head = first.data as unknown as Typed;
  const ctor = head.constructor as TypedCtor;
  let contiguous = true;
  let end = head.byteOffset;
  for (const p of parts) {
    const d = p.data as unknown as Typed;
    if (d.buffer !== head.buffer || d.byteOffset !== end || d.constructor !== ctor) {
      contiguous = false;
      break;
    }
    end += d.byteLength;
  }
  if (contiguous) return { ...first, dims, data: new ctor(head.buffer, head.byteOffset, length) };
  const data = new ctor(length);
  let offset = 0;
  for (const p of parts) {
    data.set(p.data, offset);
    offset += p.data.length;
  }
  return { ...first, dims, data };
}

/**
 * An output's rows for each call (`rows[n]` rows for call n): plain arrays, or views of the
 * output's TypedArray (`plain` false, for the trip to the main thread).
 */
function split(
  output: RawOutput,
  rows: readonly number[],
  total: number,
  plain: boolean,
): { name: string; datatype: OipDatatype; tail: number[]; data: unknown[] } {
  const { data } = output;
  const perRow = total === 0 ? 0 : data.length / total;
  const typed = ArrayBuffer.isView(data);
  const parts: unknown[] = new Array(rows.length);
  let offset = 0;
  for (let n = 0; n < rows.length; n++) {
    const from = offset * perRow;
    const to = (offset + rows[n]) * perRow;
    const values = typed
      ? (data as unknown as { subarray(a: number, b: number): ArrayLike<unknown> }).subarray(from, to)
      : (data as unknown[]).slice(from, to);
    parts[n] = plain ? oipData(output.datatype, values) : values;
    offset += rows[n];
  }
  return { name: output.name, datatype: output.datatype, tail: output.dims.slice(1), data: parts };
}

// OnnxModel: a built-in model class over onnxruntime-node with Open Inference Protocol tensors.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ModelLoadError, toError } from '../errors.js';
import type { ModelArtifact } from '../model/artifact.js';
import { Model, type ModelInit, type ModelMetadata, type PredictContext } from '../model/model.js';
import { OIP_DATATYPE, ORT_TYPE, type OipDatatype } from './datatypes.js';
import { inPoolWorker, loadRuntime, type OrtRuntime, type OrtSession, type OrtTensor } from './runtime.js';
import { checkRequest, oipData, type CheckedInput, type ExpectedInput, type OipTensor } from './tensor.js';
import { WIRE_BATCH, tableInput, unpackInputs, type WireHead, type WireValue } from './wire.js';

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
   * @internal In a pool worker: `predictBatch` in the wire form of `wire.ts`, on the input list as
   * it crossed (rows of a packed table, bodies) — a batch that is nothing but valid rows runs
   * straight from the table (`tableInput`), without a body or a check per call. The calls of a
   * merged run answer with one `WireHead` (the run's outputs as onnxruntime gave them) and their
   * row counts; a call run alone with its response, data left as TypedArrays. The main side
   * rebuilds the responses (`unpackBatch`). The contexts are not read (`contexts` makes them): a
   * subclass that overrides `predictBatch` is called with the bodies and contexts.
   */
  [WIRE_BATCH](
    list: readonly unknown[],
    contexts: () => readonly PredictContext[],
  ): Promise<(OnnxResponse | WireValue | Error)[]> | (OnnxResponse | Error)[] {
    if (this.predictBatch !== OnnxModel.prototype.predictBatch) return this.predictBatch(unpackInputs(list) as OnnxRequest[], contexts());
    const merged = this.#batchable ? tableInput(list, this.#inputs) : undefined;
    if (merged === undefined) return this.#batch(unpackInputs(list) as OnnxRequest[], false);
    const { rows } = merged;
    return this.#merged([merged.input], rows, false).then(
      (results) =>
        results ??
        // The outputs do not keep the batch dimension: the calls run one by one, as #batch does.
        this.#batch(unpackInputs(list) as OnnxRequest[], false),
    );
  }

  async #batch(bodies: readonly OnnxRequest[], plain: true): Promise<(OnnxResponse | Error)[]>;
  async #batch(bodies: readonly OnnxRequest[], plain: false): Promise<(OnnxResponse | WireValue | Error)[]>;
  async #batch(bodies: readonly OnnxRequest[], plain: boolean): Promise<(OnnxResponse | WireValue | Error)[]> {
    const results: (OnnxResponse | WireValue | Error)[] = new Array<OnnxResponse | WireValue | Error>(bodies.length);
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
      const answers = await this.#merged(merged, rows, plain);
      if (answers !== undefined) {
        checked.forEach((c, n) => (results[c.index] = answers[n]));
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

  /**
   * One run of calls merged along the first dimension (`rows[n]` rows for call n): a response per
   * call (`plain`), or the wire form — a `WireHead` for the first call, row counts for the
   * others. `undefined` when an output does not keep the batch dimension (the calls must run alone).
   */
  async #merged(
    merged: readonly CheckedInput[],
    rows: readonly number[],
    plain: boolean,
  ): Promise<(OnnxResponse | WireValue)[] | undefined> {
    const total = merged[0].dims[0];
    const outputs = await this.#run(merged);
    if (!outputs.every((o) => o.dims.length > 0 && o.dims[0] === total)) return undefined;
    if (!plain) {
      const head: WireHead = {
        rxserveOnnxHead: 1,
        model_name: this.name,
        rows: rows[0],
        total,
        outputs: outputs.map((o) => ({ name: o.name, datatype: o.datatype, tail: o.dims.slice(1), data: o.data })),
      };
      const answers: WireValue[] = [head];
      for (let n = 1; n < rows.length; n++) answers.push(rows[n]);
      return answers;
    }
    const parts = outputs.map((o) => split(o, rows, total));
    return rows.map((r, n) => ({
      model_name: this.name,
      outputs: parts.map((p) => ({ name: p.name, shape: [r, ...p.tail], datatype: p.datatype, data: p.data[n] })),
    }));
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

/** An output's rows for each call (`rows[n]` rows for call n), as plain arrays. */
function split(
  output: RawOutput,
  rows: readonly number[],
  total: number,
): { name: string; datatype: OipDatatype; tail: number[]; data: unknown[] } {
  const { data } = output;
  const perRow = total === 0 ? 0 : data.length / total;
  const parts: unknown[] = new Array(rows.length);
  let offset = 0;
  for (let n = 0; n < rows.length; n++) {
    parts[n] = oipData(output.datatype, data, offset * perRow, (offset + rows[n]) * perRow);
    offset += rows[n];
  }
  return { name: output.name, datatype: output.datatype, tail: output.dims.slice(1), data: parts };
}

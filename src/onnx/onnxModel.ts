// OnnxModel: a built-in model class over onnxruntime-node with Open Inference Protocol tensors.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ModelLoadError, toError } from '../errors.js';
import type { ModelArtifact } from '../model/artifact.js';
import { Model, type ModelInit, type PredictContext } from '../model/model.js';
import { OIP_DATATYPE, ORT_TYPE } from './datatypes.js';
import { inPoolWorker, loadRuntime, type OrtRuntime, type OrtSession, type OrtTensor } from './runtime.js';
import { checkRequest, toOipOutput, type CheckedInput, type ExpectedInput, type OipTensor } from './tensor.js';

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
 * (DESIGN §13); with `batching` on its entry, calls are concatenated along the first dimension
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
    throw new ModelLoadError(this.name, `OnnxModel needs params.modelPath or a modelArtifact whose modelUrl is a file: URL (got ${url === undefined ? 'neither' : `modelUrl '${url}'`})`);
  }

  override async load(): Promise<void> {
    const path = this.modelPath;
    if (!existsSync(path)) throw new ModelLoadError(this.name, `the ONNX model file '${path}' does not exist`);
    this.#ort = await loadRuntime().catch((error: unknown) => {
      throw new ModelLoadError(this.name, toError(error).message, { cause: error });
    });
    const options = { ...(inPoolWorker() ? { intraOpNumThreads: 1 } : {}), ...((this.params.sessionOptions as Record<string, unknown> | undefined) ?? {}) };
    try {
      this.#session = await this.#ort.InferenceSession.create(path, options);
    } catch (cause) {
      throw new ModelLoadError(this.name, `onnxruntime could not load '${path}': ${toError(cause).message}`, { cause });
    }
    const session = this.#session;
    this.#inputs = session.inputMetadata.map((m) => {
      const datatype = m.isTensor ? OIP_DATATYPE[m.type ?? ''] : undefined;
      if (datatype === undefined) throw new ModelLoadError(this.name, `input '${m.name}' of '${path}' is ${m.isTensor ? `a ${m.type} tensor` : 'not a tensor'}, which OnnxModel cannot feed`);
      return { name: m.name, datatype, shape: (m.shape ?? []).map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) };
    });
    this.#outputs = session.outputNames.map((name) => ({ name }));
    this.#batchable = this.#inputs.length > 0 && this.#inputs.every((i) => i.shape.length > 0 && i.shape[0] === -1);
  }

  /** What the model expects: its inputs' names, OIP datatypes and shapes (`-1`: any size). */
  get inputs(): readonly ExpectedInput[] {
    return this.#inputs;
  }

  override async predict(body: OnnxRequest, _ctx: PredictContext): Promise<OnnxResponse> {
    return this.#run(checkRequest(this.name, body, this.#inputs));
  }

  /**
   * Concatenates the calls' inputs along the first dimension, runs the model once and splits
   * its outputs; a call whose input is wrong fails alone. Models whose first dimension is fixed
   * (or whose outputs do not keep it) run call by call.
   */
  override async predictBatch(bodies: readonly OnnxRequest[], _ctxs: readonly PredictContext[]): Promise<(OnnxResponse | Error)[]> {
    const results: (OnnxResponse | Error)[] = new Array(bodies.length);
    const checked: { index: number; inputs: CheckedInput[] }[] = [];
    bodies.forEach((body, index) => {
      try {
        checked.push({ index, inputs: checkRequest(this.name, body, this.#inputs) });
      } catch (error) {
        results[index] = toError(error);
      }
    });
    const sameTail = checked.every((c) => c.inputs.every((input, k) => sameDims(input.dims.slice(1), checked[0].inputs[k].dims.slice(1))));
    const rows = checked.map((c) => c.inputs[0]?.dims[0] ?? 0);
    if (checked.length > 1 && this.#batchable && sameTail) {
      const merged = this.#inputs.map((_, k) => concat(checked.map((c) => c.inputs[k])));
      const total = rows.reduce((a, b) => a + b, 0);
      const response = await this.#run(merged);
      if (response.outputs.every((o) => o.shape.length > 0 && o.shape[0] === total)) {
        let offset = 0;
        checked.forEach((c, n) => {
          results[c.index] = { model_name: this.name, outputs: response.outputs.map((o) => slice(o, offset, rows[n], total)) };
          offset += rows[n];
        });
        return results;
      }
    }
    await Promise.all(
      checked.map(async (c) => {
        try {
          results[c.index] = await this.#run(c.inputs);
        } catch (error) {
          results[c.index] = toError(error);
        }
      }),
    );
    return results;
  }

  async #run(inputs: readonly CheckedInput[]): Promise<OnnxResponse> {
    const ort = this.#ort;
    const session = this.#session;
    if (ort === undefined || session === undefined) throw new ModelLoadError(this.name, 'the model is not loaded');
    const feeds: Record<string, OrtTensor> = {};
    for (const input of inputs) feeds[input.name] = new ort.Tensor(ORT_TYPE[input.datatype], input.data, input.dims);
    const out = await session.run(feeds);
    return { model_name: this.name, outputs: this.#outputs.map(({ name }) => toOipOutput(name, out[name].type, out[name].dims, out[name].data)) };
  }

  override async close(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    await session?.release();
  }
}

const sameDims = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Inputs of several calls as one, along the first dimension. */
function concat(parts: readonly CheckedInput[]): CheckedInput {
  const first = parts[0];
  const length = parts.reduce((n, p) => n + p.data.length, 0);
  const dims = [parts.reduce((n, p) => n + p.dims[0], 0), ...first.dims.slice(1)];
  if (Array.isArray(first.data)) return { ...first, dims, data: parts.flatMap((p) => p.data as unknown[]) };
  const ctor = (first.data as unknown as { constructor: new (n: number) => { set(a: ArrayLike<unknown>, o: number): void } & ArrayLike<unknown> }).constructor;
  const data = new ctor(length);
  let offset = 0;
  for (const p of parts) {
    data.set(p.data, offset);
    offset += p.data.length;
  }
  return { ...first, dims, data };
}

/** One call's rows of a batch output. */
function slice(output: OipTensor, offset: number, rows: number, total: number): OipTensor {
  const data = output.data as unknown[];
  const perRow = total === 0 ? 0 : data.length / total;
  return { ...output, shape: [rows, ...output.shape.slice(1)], data: data.slice(offset * perRow, (offset + rows) * perRow) };
}

// The slice of onnxruntime-node that OnnxModel uses, imported lazily where the model loads.
import { isMainThread } from 'node:worker_threads';

/** An onnxruntime tensor, as far as OnnxModel reads it. */
export interface OrtTensor {
  readonly type: string;
  readonly dims: readonly number[];
  readonly data: ArrayLike<unknown>;
}

export interface OrtValueMetadata {
  readonly name: string;
  readonly isTensor: boolean;
  readonly type?: string;
  readonly shape?: readonly (number | string)[];
}

export interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly OrtValueMetadata[];
  readonly outputMetadata: readonly OrtValueMetadata[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}

export interface OrtRuntime {
  readonly InferenceSession: { create(path: string, options?: Record<string, unknown>): Promise<OrtSession> };
  readonly Tensor: new (type: string, data: unknown, dims: readonly number[]) => OrtTensor;
}

/** onnxruntime-node, loaded once per thread or process; a missing package says how to add it. */
export async function loadRuntime(): Promise<OrtRuntime> {
  try {
    const ort = (await import('onnxruntime-node')) as unknown as OrtRuntime & { default?: OrtRuntime };
    return ort.InferenceSession ? ort : ort.default!;
  } catch (cause) {
    throw new Error(`onnxruntime-node cannot be loaded (npm install onnxruntime-node; see docs/onnx.md): ${(cause as Error).message}`, {
      cause,
    });
  }
}

/**
 * Whether this code runs in a worker thread or a child process of a pool: there each model gets
 * one intra-op thread by default, so workers do not fight over the cores.
 */
export function inPoolWorker(): boolean {
  return !isMainThread || typeof process.send === 'function';
}

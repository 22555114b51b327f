// The built-in model classes as a worker loads them: by name, on first use. A worker entry that
// imported them all (LLModel with its providers, rxjs and io-ts; OnnxModel) spent ~130 ms of every
// worker's start before any model was asked for (issue 26).
import { Model, type ModelClass } from '../../model/model.js';

const LOADERS: ReadonlyMap<string, () => Promise<ModelClass>> = new Map<string, () => Promise<ModelClass>>([
  ['Model', () => Promise.resolve(Model)],
  ['LLModel', async () => (await import('../../llm/llmodel.js')).LLModel],
  ['OnnxModel', async () => (await import('../../onnx/onnxModel.js')).OnnxModel],
]);

/** The built-in class named `name`, or `undefined` when there is none of that name. */
export function loadBuiltIn(name: string): Promise<ModelClass> | undefined {
  return LOADERS.get(name)?.();
}

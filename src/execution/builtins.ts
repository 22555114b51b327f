// The built-in model classes on the main side: the one list, registered by name and accepted by
// worker mechanisms without a module reference. Workers load them lazily (worker/lazyBuiltins.ts).
import { LLModel } from '../llm/llmodel.js';
import { OnnxModel } from '../onnx/onnxModel.js';
import { Model, type ModelClass } from '../model/model.js';
import { registerModel } from '../model/registry.js';

/** Built-in model classes by name (`modelClass: 'LLModel'`). */
export const BUILT_IN_MODELS: ReadonlyMap<string, ModelClass> = new Map<string, ModelClass>([
  ['Model', Model],
  ['LLModel', LLModel],
  ['OnnxModel', OnnxModel],
]);

for (const [name, cls] of BUILT_IN_MODELS) registerModel(name, cls);

// Turns a model entry into what a worker needs to build the model (a module reference, not a class).
import { firstNonJson } from '../config.js';
import { ConfigError, ModelLoadError } from '../errors.js';
import type { ModelEntry } from '../model/entry.js';
import { LLModel } from '../llm/llmodel.js';
import { OnnxModel } from '../onnx/onnxModel.js';
import { Model } from '../model/model.js';
import { registeredModel } from '../model/registry.js';
import type { WorkerModelSpec } from './protocol.js';

/** Classes a worker has built in, by registered name. */
const BUILT_IN = new Map<string, unknown>([
  ['Model', Model],
  ['LLModel', LLModel],
  ['OnnxModel', OnnxModel],
]);

/**
 * The spec key (JSON of a `WorkerModelSpec`) for an entry run in a worker. A name registered to a
 * class cannot cross into a worker: that is a `ConfigError` saying how to register a module.
 * `params` and the artifact must be JSON data.
 */
export function workerSpecKey(entry: ModelEntry, step: string): string {
  const where = `${step}.models['${entry.endpointName}']`;
  const ref = entry.modelClass;
  let module: string | null;
  let exportName: string;
  if (typeof ref === 'string') {
    const target = registeredModel(ref);
    if (target === undefined) {
      throw new ModelLoadError(entry.endpointName, `no model class is registered as '${ref}'; call registerModel('${ref}', { module, export }) first`);
    }
    if (typeof target === 'function') {
      if (BUILT_IN.get(ref) !== target) {
        throw new ConfigError([
          {
            path: `${where}.modelClass`,
            expected:
              `a model registered with a module reference for '${entry.executionMechanism}' (workers import the class): ` +
              `registerModel('${ref}', { module: <absolute path or file: URL>, export: '${target.name || ref}' })`,
            actual: `'${ref}', registered to a class`,
          },
        ]);
      }
      module = null;
      exportName = ref;
    } else {
      module = target.module;
      exportName = target.export ?? 'default';
    }
  } else if (typeof ref === 'function') {
    throw new ConfigError([{ path: `${where}.modelClass`, expected: 'a registered name or { module, export }', actual: `class ${ref.name}` }]);
  } else {
    module = ref.module;
    exportName = ref.export ?? 'default';
  }
  const spec: WorkerModelSpec = {
    endpointName: entry.endpointName,
    module,
    export: exportName,
    params: entry.params ?? {},
    ...(entry.modelArtifact !== undefined ? { artifact: entry.modelArtifact } : {}),
  };
  for (const [field, value] of [['params', spec.params], ['modelArtifact', spec.artifact]] as const) {
    const bad = firstNonJson(value, field);
    if (bad) throw new ConfigError([{ path: `${where}.${bad}`, expected: 'JSON data (workers receive it as JSON)' }]);
  }
  return JSON.stringify(spec);
}


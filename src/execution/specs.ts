// Turns a model entry into what a worker needs to build the model (a module reference, not a class).
import { ConfigError, ModelLoadError } from '../errors.js';
import { assertWorkerData, type ModelEntry } from '../model/entry.js';
import { isModelInstance, modelClassName, registeredModel } from '../model/registry.js';
import { BUILT_IN_MODELS } from './builtins.js';
import type { WorkerModelSpec } from './wire/protocol.js';

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
      throw new ModelLoadError(
        entry.endpointName,
        `no model class is registered as '${ref}'; call registerModel('${ref}', { module, export }) first`,
      );
    }
    if (typeof target === 'function') {
      if (BUILT_IN_MODELS.get(ref) !== target) {
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
    throw new ConfigError([
      { path: `${where}.modelClass`, expected: 'a registered name or { module, export }', actual: `class ${ref.name}` },
    ]);
  } else if (isModelInstance(ref)) {
    // decodeModelEntries refuses this with the full advice; an executor opened directly lands here.
    throw new ConfigError([
      {
        path: `${where}.modelClass`,
        expected: 'a registered name or { module, export } (a worker cannot receive an instance)',
        actual: `a ${modelClassName(ref)} instance`,
      },
    ]);
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
  assertWorkerData(entry, where);
  return JSON.stringify(spec);
}

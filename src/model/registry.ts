// The model class registry: names → classes or module references, and how a reference resolves.
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, ModelLoadError } from '../errors.js';
import { type Model, type ModelClass, type ModuleRef } from './model.js';

/**
 * How an entry names its model: a class, a registered name, a module reference, or a `Model`
 * instance (in-process mechanisms only).
 */
export type ModelClassRef = string | ModelClass | ModuleRef | Model;

/**
 * True for a model instance (MLRun's `model_class` may be one). Duck-typed, not `instanceof`:
 * a model built from another copy of rxserve (ESM beside CJS) is still a model.
 */
export function isModelInstance(value: unknown): value is Model {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Model).predict === 'function' &&
    typeof (value as Model).load === 'function' &&
    typeof (value as Model).name === 'string'
  );
}

const registry = new Map<string, ModelClass | ModuleRef>();

/**
 * Registers a model class under a name, so entries (and workers) can name it by string.
 *
 * Registering the same target again is a no-op; a different target under a taken name throws
 * `ConfigError` unless `override` is set. Pool mechanisms load classes inside workers, so for them
 * register a module reference (`{ module, export }`), which a worker can import.
 *
 * ## Example
 * ```ts
 * import { registerModel } from 'rxserve';
 * registerModel('Doubler', Doubler);                                        // in-process use
 * registerModel('Scorer', { module: new URL('./scorer.js', import.meta.url).href, export: 'Scorer' });
 * ```
 */
export function registerModel(name: string, target: ModelClass | ModuleRef, options: { override?: boolean } = {}): void {
  if (typeof name !== 'string' || name.length === 0) {
    throw new ConfigError([{ path: 'registerModel.name', expected: 'a non-empty string', actual: String(name) }]);
  }
  if (typeof target !== 'function') validateModuleRef(target, 'registerModel.target');
  const existing = registry.get(name);
  if (existing !== undefined && !options.override && !sameTarget(existing, target)) {
    throw new ConfigError(`model class '${name}' is already registered; pass { override: true } to replace it`);
  }
  registry.set(name, target);
}

/** Removes a registration (tests use it); returns whether there was one. */
export function unregisterModel(name: string): boolean {
  return registry.delete(name);
}

/** The registered target for `name`, or `undefined`. */
export function registeredModel(name: string): ModelClass | ModuleRef | undefined {
  return registry.get(name);
}

/** The names registered so far. */
export function registeredModelNames(): string[] {
  return [...registry.keys()];
}

function sameTarget(a: ModelClass | ModuleRef, b: ModelClass | ModuleRef): boolean {
  if (typeof a === 'function' || typeof b === 'function') return a === b;
  return a.module === b.module && (a.export ?? 'default') === (b.export ?? 'default');
}

/** Throws `ConfigError` unless `ref` is `{ module: <absolute path | file: URL | package>, export? }`. */
export function validateModuleRef(ref: unknown, path: string): asserts ref is ModuleRef {
  const r = ref as ModuleRef;
  if (r === null || typeof r !== 'object' || typeof r.module !== 'string' || r.module.length === 0) {
    throw new ConfigError([{ path, expected: '{ module: string, export?: string }' }]);
  }
  if (r.module.startsWith('./') || r.module.startsWith('../')) {
    throw new ConfigError([
      {
        path: `${path}.module`,
        expected: "an absolute path, a file: URL or a package name (resolve relative paths with new URL('./x.js', import.meta.url).href)",
        actual: JSON.stringify(r.module),
      },
    ]);
  }
  if (r.export !== undefined && (typeof r.export !== 'string' || r.export.length === 0)) {
    throw new ConfigError([{ path: `${path}.export`, expected: 'a non-empty string', actual: String(r.export) }]);
  }
}

/** A short human name for a class reference, as monitoring and errors show it. */
export function modelClassName(ref: ModelClassRef): string {
  if (typeof ref === 'string') return ref;
  if (typeof ref === 'function') return ref.name || '(anonymous class)';
  if (isModelInstance(ref)) return ref.constructor.name || '(anonymous class)';
  return `${ref.module}#${ref.export ?? 'default'}`;
}

// In the CommonJS build the bundler turns `import(x)` into `require(x)`, which takes no `file:` URL
// and cannot load an ES module on Node 20: there, a real import() made at run time takes over.
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- deliberate: an import() the CommonJS bundler cannot rewrite (above)
const runtimeImport = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<Record<string, unknown>>;

/** `import(specifier)` that also works from the CommonJS build (see above). */
export async function importModule(specifier: string): Promise<Record<string, unknown>> {
  try {
    return (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'MODULE_NOT_FOUND' || code === 'ERR_REQUIRE_ESM') return runtimeImport(specifier);
    throw error;
  }
}

/**
 * Resolves a class reference to a class: synchronously for classes and names registered to
 * classes, through a dynamic `import()` for module references. Failures are `ModelLoadError`s
 * naming the endpoint.
 */
export function resolveModelClass(ref: Exclude<ModelClassRef, Model>, endpointName: string): ModelClass | Promise<ModelClass> {
  if (typeof ref === 'function') return ref;
  if (typeof ref === 'string') {
    const target = registry.get(ref);
    if (target === undefined) {
      throw new ModelLoadError(
        endpointName,
        `no model class is registered as '${ref}' (registered: ${registeredModelNames().join(', ') || 'none'}); ` +
          `call registerModel('${ref}', ...) first`,
      );
    }
    return typeof target === 'function' ? target : importModelClass(target, endpointName);
  }
  return importModelClass(ref, endpointName);
}

/** Imports `{ module, export }` and checks that the export is a model class. */
export async function importModelClass(ref: ModuleRef, endpointName: string): Promise<ModelClass> {
  const specifier = isAbsolute(ref.module) ? pathToFileURL(ref.module).href : ref.module;
  let namespace: Record<string, unknown>;
  try {
    namespace = await importModule(specifier);
  } catch (cause) {
    throw new ModelLoadError(endpointName, `cannot import module '${ref.module}': ${(cause as Error).message}`, {
      cause,
    });
  }
  const exportName = ref.export ?? 'default';
  const value = namespace[exportName];
  if (typeof value !== 'function' || typeof (value as { prototype?: { predict?: unknown } }).prototype?.predict !== 'function') {
    throw new ModelLoadError(
      endpointName,
      `export '${exportName}' of module '${ref.module}' is not a model class (a class with a predict method); ` +
        `exports: ${Object.keys(namespace).sort().join(', ') || 'none'}`,
    );
  }
  return value as ModelClass;
}

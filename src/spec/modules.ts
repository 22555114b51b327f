// Module references of a spec ({ module, export }): resolved against the spec's folder, imported, checked.
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError, toError } from '../errors.js';
import { importModule } from '../model/registry.js';
import type { ModuleRef } from './graphSpec.js';

/**
 * What `import()` should load for `specifier`: a relative path (`./x.mjs`, `../x.mjs`) resolved
 * against `baseDir`, an absolute path, or a `file:` URL, all as a `file:` URL; anything else (a
 * package name) as it is.
 */
export function resolveSpecifier(specifier: string, baseDir: string): string {
  if (specifier.startsWith('file:')) return specifier;
  if (specifier.startsWith('./') || specifier.startsWith('../') || specifier === '.' || specifier === '..') {
    return pathToFileURL(resolve(baseDir, specifier)).href;
  }
  if (isAbsolute(specifier)) return pathToFileURL(specifier).href;
  return specifier;
}

/** The file a resolved specifier names, or `undefined` for a package name. */
function fileOf(resolved: string): string | undefined {
  return resolved.startsWith('file:') ? fileURLToPath(resolved) : undefined;
}

/**
 * `ref` with its module resolved (a `file:` URL, which workers can import too). Throws
 * `ConfigError` at `<path>.module` when it names a file that does not exist.
 */
export function resolveModuleRef(ref: ModuleRef, baseDir: string, path: string): { module: string; export?: string } {
  const module = resolveSpecifier(ref.module, baseDir);
  const file = fileOf(module);
  if (file !== undefined && !existsSync(file)) {
    throw new ConfigError([{ path: `${path}.module`, expected: 'a module file that exists', actual: `'${ref.module}' (${file})` }]);
  }
  return { module, ...(ref.export !== undefined ? { export: ref.export } : {}) };
}

/** Imports `ref` and returns its export (default `'default'`); a missing file or export is a `ConfigError` at `path`. */
export async function importExport(ref: ModuleRef, baseDir: string, path: string): Promise<unknown> {
  const { module } = resolveModuleRef(ref, baseDir, path);
  let namespace: Record<string, unknown>;
  try {
    namespace = await importModule(module);
  } catch (thrown) {
    const cause = toError(thrown);
    throw new ConfigError(
      [{ path: `${path}.module`, expected: 'a module that can be imported', actual: `'${ref.module}': ${cause.name}: ${cause.message}` }],
      { cause },
    );
  }
  const name = ref.export ?? 'default';
  if (!Object.hasOwn(namespace, name) || namespace[name] === undefined) {
    throw new ConfigError([
      {
        path: `${path}.export`,
        expected: `an export of '${ref.module}' (exports: ${Object.keys(namespace).sort().join(', ') || 'none'})`,
        actual: `'${name}'`,
      },
    ]);
  }
  return namespace[name];
}

/** Imports `ref` and checks that its export is a function (a step, a key function, an error handler). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a user's export, typed by the caller's use of it (a step, a key function, a handler)
export async function importFunction(ref: ModuleRef, baseDir: string, path: string, what: string): Promise<(...args: any[]) => any> {
  const value = await importExport(ref, baseDir, path);
  if (typeof value !== 'function') {
    throw new ConfigError([
      { path: `${path}.export`, expected: what, actual: `${typeof value} (export '${ref.export ?? 'default'}' of '${ref.module}')` },
    ]);
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as the return type (above)
  return value as (...args: any[]) => any;
}

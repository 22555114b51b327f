// What `rxserve validate` checks of a spec's models beyond its shape: that each model class can be
// found (a registered name, or a module export that is a model class) and that an LLModel's model
// URL names a provider. Building a graph does not do this for worker mechanisms, whose classes
// load inside the workers; validate does it in this process, so a spec is code (docs/spec.md).
import { ConfigError, toError, type ConfigIssue } from '../errors.js';
import { didYouMean } from '../decode.js';
import { PROVIDER_SCHEMES, providerScheme } from '../llm/providers/provider.js';
import { registeredModel, registeredModelNames } from '../model/registry.js';
import type { ModuleRef } from './graphSpec.js';
import { importExport } from './modules.js';

/**
 * Every model entry of a decoded spec (an object with a `modelClass`, found wherever a step kind
 * puts one), checked; all the problems in one `ConfigError` naming each path.
 */
export async function checkModels(spec: unknown, baseDir: string): Promise<void> {
  const issues: ConfigIssue[] = [];
  for (const { entry, path } of modelEntries(spec)) {
    const modelClass = entry.modelClass;
    let className: string | undefined;
    let ref: ModuleRef | undefined;
    if (typeof modelClass === 'string') {
      const target = registeredModel(modelClass);
      if (target === undefined) {
        const known = registeredModelNames();
        issues.push({
          path: `${path}.modelClass`,
          expected: `a registered model class (${known.join(', ')}) or { module, export }${didYouMean(modelClass, known)}`,
          actual: JSON.stringify(modelClass),
        });
        continue;
      }
      className = modelClass;
      if (typeof target !== 'function') ref = target;
    } else if (modelClass !== null && typeof modelClass === 'object' && typeof (modelClass as ModuleRef).module === 'string') {
      ref = modelClass as ModuleRef;
    }
    if (ref !== undefined) {
      const issue = await checkModuleRef(ref, baseDir, `${path}.modelClass`);
      if (issue !== undefined) issues.push(issue);
    }
    if (className === 'LLModel') {
      const issue = checkModelUrl(entry.modelArtifact, `${path}.modelArtifact`);
      if (issue !== undefined) issues.push(issue);
    }
  }
  if (issues.length > 0) throw new ConfigError(issues);
}

async function checkModuleRef(ref: ModuleRef, baseDir: string, path: string): Promise<ConfigIssue | undefined> {
  let value: unknown;
  try {
    value = await importExport(ref, baseDir, path);
  } catch (error) {
    if (error instanceof ConfigError && error.issues.length > 0) return error.issues[0];
    return { path, expected: 'a module that can be imported', actual: toError(error).message };
  }
  if (typeof value !== 'function' || typeof (value as { prototype?: { predict?: unknown } }).prototype?.predict !== 'function') {
    return {
      path: `${path}.export`,
      expected: 'a model class (a class with a predict method)',
      actual: `${typeof value} (export '${ref.export ?? 'default'}' of '${ref.module}')`,
    };
  }
  return undefined;
}

/** An LLModel's artifact (a model artifact, or a prompt artifact's `model`) must name a known provider. */
function checkModelUrl(artifact: unknown, path: string): ConfigIssue | undefined {
  if (artifact === null || typeof artifact !== 'object') return undefined; // absent, or a file read at build
  const model = (artifact as { model?: unknown }).model;
  const [url, at] =
    model !== null && typeof model === 'object'
      ? [(model as { modelUrl?: unknown }).modelUrl, `${path}.model.modelUrl`]
      : [(artifact as { modelUrl?: unknown }).modelUrl, `${path}.modelUrl`];
  if (typeof url !== 'string') return undefined; // the shape check names it
  const scheme = providerScheme(url);
  if (scheme !== undefined && PROVIDER_SCHEMES.includes(scheme)) return undefined;
  return {
    path: at,
    expected: `a URL with a known provider: 'openai://<model>', 'huggingface://<org>/<model>' or 'mock://'${scheme ? didYouMean(scheme, PROVIDER_SCHEMES) : ''}`,
    actual: JSON.stringify(url.length > 200 ? `${url.slice(0, 200)}…` : url),
  };
}

/** Objects with a `modelClass` key anywhere in the spec, with their paths (an explicit stack, no recursion). */
function modelEntries(spec: unknown): { entry: Record<string, unknown>; path: string }[] {
  const found: { entry: Record<string, unknown>; path: string }[] = [];
  const stack: { value: unknown; path: string }[] = [{ value: spec, path: '' }];
  while (stack.length > 0) {
    const { value, path } = stack.pop()!;
    if (value === null || typeof value !== 'object') continue;
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], path: `${path}[${i}]` });
      continue;
    }
    const record = value as Record<string, unknown>;
    if (Object.hasOwn(record, 'modelClass') && Object.hasOwn(record, 'executionMechanism')) found.push({ entry: record, path });
    const keys = Object.keys(record);
    for (let i = keys.length - 1; i >= 0; i--) {
      if (keys[i] === 'modelClass' || keys[i] === 'modelArtifact' || keys[i] === 'params') continue;
      stack.push({ value: record[keys[i]], path: path === '' ? keys[i] : `${path}.${keys[i]}` });
    }
  }
  return found;
}

// Model and prompt artifacts (docs/design.md §10): their types, constructors, codecs and JSON files.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as t from 'io-ts';
import { NonEmptyString, decodeOrThrow, strict } from '../decode.js';

/** A model artifact: where the model lives and how to call it. */
export interface ModelArtifact {
  readonly key: string;
  readonly uri?: string;
  /** `'openai://gpt-4o-mini'`, `'huggingface://org/model'`, `'mock://'`, or a model's own URL. */
  readonly modelUrl: string;
  readonly defaultConfig?: Readonly<Record<string, unknown>>;
  readonly providerOptions?: {
    readonly apiKey?: string;
    readonly baseURL?: string;
    /** Hugging Face only: 'chat' (chat completion, the default) or 'text-generation'. */
    readonly task?: 'chat' | 'text-generation';
    /**
     * The HTTP client under the provider's official client: `'dispatcher'` (the default: undici's
     * `request()` on the global dispatcher — the one the global fetch sends on, so a
     * `setGlobalDispatcher` proxy or TLS setup applies — without fetch's WHATWG layer; the global
     * fetch itself when that has been replaced), `'fetch'` (always the global fetch) or
     * `'node-http'` (rxserve's own keep-alive undici pool, not the global dispatcher; see docs/llm.md).
     */
    readonly transport?: 'dispatcher' | 'fetch' | 'node-http';
  };
}

/** A prompt over a model artifact. */
export interface LLMPromptArtifact {
  readonly key: string;
  readonly uri?: string;
  readonly model: ModelArtifact;
  /** `{placeholder}` syntax in `content`. */
  readonly promptTemplate?: readonly { readonly role: string; readonly content: string }[];
  readonly promptLegend?: Readonly<Record<string, { readonly field?: string; readonly description?: string }>>;
  /** Overrides the model's `defaultConfig`. */
  readonly invocationConfig?: Readonly<Record<string, unknown>>;
}

const ProviderOptions = strict(
  'ProviderOptions',
  {},
  {
    apiKey: t.string,
    baseURL: NonEmptyString,
    /** Hugging Face only: 'chat' (chat completion, the default) or 'text-generation'. */
    task: t.keyof({ chat: null, 'text-generation': null }),
    /** The HTTP client under the provider's client: the global dispatcher (default), the global fetch, or rxserve's own pool. */
    transport: t.keyof({ dispatcher: null, fetch: null, 'node-http': null }),
  },
);

const ModelArtifactCodec = strict(
  'ModelArtifact',
  { key: NonEmptyString, modelUrl: NonEmptyString },
  { uri: NonEmptyString, defaultConfig: t.UnknownRecord, providerOptions: ProviderOptions },
);

const Message = strict('{ role, content }', { role: NonEmptyString, content: t.string }, {});

const PromptArtifactCodec = strict(
  'LLMPromptArtifact',
  { key: NonEmptyString, model: t.unknown },
  {
    uri: NonEmptyString,
    promptTemplate: t.array(Message),
    promptLegend: t.record(t.string, strict('PromptLegendEntry', {}, { field: t.string, description: t.string })),
    invocationConfig: t.UnknownRecord,
  },
);

/**
 * A model artifact: where an LLM lives (`openai://gpt-4o-mini`, `huggingface://org/model`,
 * `mock://`), its default invocation config and provider options. `uri` defaults to
 * `store://models/<key>`; shared-model proxies match by it.
 */
export function modelArtifact(spec: ModelArtifact): ModelArtifact {
  return decodeModelArtifact(spec, 'modelArtifact');
}

/** `path`: where the artifact sits in what the user passed, for the ConfigError. */
function decodeModelArtifact(spec: unknown, path: string): ModelArtifact {
  const decoded = decodeOrThrow(ModelArtifactCodec, spec, path) as ModelArtifact;
  return Object.freeze({ ...decoded, uri: decoded.uri ?? `store://models/${decoded.key}` });
}

/**
 * A prompt over a model artifact: a `{placeholder}` template, a legend mapping placeholders to
 * body fields, and an invocation config over the model's default. `uri` defaults to
 * `store://prompts/<key>`; a proxy with it finds the shared model by `model.uri`.
 */
export function llmPromptArtifact(spec: Omit<LLMPromptArtifact, 'model'> & { model: ModelArtifact }): LLMPromptArtifact {
  return decodePromptArtifact(spec, 'llmPromptArtifact');
}

function decodePromptArtifact(spec: unknown, path: string): LLMPromptArtifact {
  const decoded = decodeOrThrow(PromptArtifactCodec, spec, path);
  const model = decodeModelArtifact((spec as { model: unknown }).model, `${path}.model`);
  return Object.freeze({ ...(decoded as Omit<LLMPromptArtifact, 'model'>), model, uri: decoded.uri ?? `store://prompts/${decoded.key}` });
}

/**
 * Reads an artifact from a JSON file (a path or a `file:` URL): a prompt artifact when it has
 * `model`, else a model artifact.
 */
export async function loadArtifact(path: string): Promise<ModelArtifact | LLMPromptArtifact> {
  return decodeArtifactJson(parseArtifactJson(await readFile(localPath(path), 'utf8')), undefined);
}

/**
 * `loadArtifact`, synchronously, for configuration time (a model entry's `modelArtifact` given
 * as a path or `file:` URL is read when the step is configured, as MLRun resolves it in
 * `add_model`). `field` names the entry field in a `ConfigError` about the file's content; a
 * file that cannot be read or parsed throws the plain fs / JSON error.
 */
export function readArtifactFile(path: string, field: string): ModelArtifact | LLMPromptArtifact {
  return decodeArtifactJson(parseArtifactJson(readFileSync(localPath(path), 'utf8')), field);
}

/**
 * JSON.parse whose error never quotes the file: Node's own message shows the text around the
 * mistake, and a path that names the wrong file (`/etc/passwd`) would print its first line.
 */
function parseArtifactJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const at = /at position (\d+)/.exec((error as Error).message)?.[1];
    throw new SyntaxError(`the file is not valid JSON${at !== undefined ? ` (at position ${at})` : ''}; an artifact file is a JSON object`);
  }
}

function localPath(path: string): string {
  return path.startsWith('file:') ? fileURLToPath(path) : path;
}

/** `field` (or, without it, the constructor's name) is the path a ConfigError names. */
function decodeArtifactJson(json: unknown, field: string | undefined): ModelArtifact | LLMPromptArtifact {
  return typeof json === 'object' && json !== null && 'model' in json
    ? decodePromptArtifact(json, field ?? 'llmPromptArtifact')
    : decodeModelArtifact(json, field ?? 'modelArtifact');
}

/** True for a prompt artifact (it has a parent `model`). */
export function isPromptArtifact(artifact: unknown): artifact is LLMPromptArtifact {
  return typeof artifact === 'object' && artifact !== null && typeof (artifact as LLMPromptArtifact).model === 'object';
}

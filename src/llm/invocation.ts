// What a caller may change of an LLM endpoint (docs/design.md §10, turn 3): the sampling fields of an
// input's `invocationConfig`, type-checked and capped, and the messages it adds.
import * as t from 'io-ts';
import { decodeOrThrow, describeValue, NonEmptyString, PositiveMs } from '../decode.js';

/**
 * The fields any caller may set in `invocationConfig` (on /v1: the request's fields of those
 * names). Everything else an endpoint's owner must list in `params.overridable`.
 */
export const SAMPLING_FIELDS = [
  'temperature',
  'top_p',
  'max_tokens',
  'max_completion_tokens',
  'stop',
  'seed',
  'presence_penalty',
  'frequency_penalty',
  'stream',
] as const;

/** A chat message as providers take it. */
export interface ChatMessage {
  readonly role: string;
  readonly content: string;
}

/** A caller's request an endpoint refuses: a `TypeError` whose `param` names the field, as OpenAI's errors do. */
export type InvalidRequest = TypeError & { readonly param: string };

/** The `TypeError` refusing `param` (an own field, so it crosses worker boundaries with the error). */
export function invalidRequest(param: string, message: string): InvalidRequest {
  const error = new TypeError(message) as TypeError & { param: string };
  error.param = param;
  return error;
}

const number = (min: number, max: number) => (v: unknown) => typeof v === 'number' && v >= min && v <= max;
const tokens = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
const isString = (v: unknown): v is string => typeof v === 'string';

/** Each sampling field's test and what it says when the test fails (OpenAI's ranges). */
const CHECKS: Readonly<Record<(typeof SAMPLING_FIELDS)[number], readonly [(v: unknown) => boolean, string]>> = {
  temperature: [number(0, 2), 'a number from 0 to 2'],
  top_p: [number(0, 1), 'a number from 0 to 1'],
  max_tokens: [tokens, 'a positive integer'],
  max_completion_tokens: [tokens, 'a positive integer'],
  stop: [
    (v) => isString(v) || (Array.isArray(v) && v.length >= 1 && v.length <= 4 && v.every(isString)),
    'a string or an array of 1 to 4 strings',
  ],
  seed: [(v) => typeof v === 'number' && Number.isSafeInteger(v), 'an integer'],
  presence_penalty: [number(-2, 2), 'a number from -2 to 2'],
  frequency_penalty: [number(-2, 2), 'a number from -2 to 2'],
  stream: [(v) => typeof v === 'boolean', 'a boolean'],
};

/**
 * What is wrong with a sampling field's value ("must be ..., got ..."), or undefined when it is
 * right or `field` is not a sampling field. The OpenAI front checks its request's fields with it.
 */
export function samplingFieldProblem(field: string, value: unknown): string | undefined {
  const check = Object.hasOwn(CHECKS, field) ? CHECKS[field as keyof typeof CHECKS] : undefined;
  return check === undefined || check[0](value) ? undefined : `must be ${check[1]}, got ${describeValue(value)}`;
}

/** An endpoint's rules for its callers, read once from its entry's `params`. */
export interface CallerPolicy {
  /** Fields beyond the sampling ones that callers may set (`params.overridable`). */
  readonly overridable: ReadonlySet<string>;
  /** Callers' messages may have content parts (images, audio, files), not only strings (`params.allowContentParts`). */
  readonly allowContentParts: boolean;
  /** Each provider attempt's limit (`params.providerTimeoutMs`): to the answer, or to the first token when streaming. */
  readonly providerTimeoutMs?: number;
}

const PolicyParams = t.partial({
  overridable: t.array(NonEmptyString),
  allowContentParts: t.boolean,
  providerTimeoutMs: PositiveMs,
});

/** The caller policy of an LLModel's `params`; a bad one is a `ConfigError` naming the field. */
export function callerPolicy(params: Readonly<Record<string, unknown>>, endpoint: string): CallerPolicy {
  const { overridable, allowContentParts, providerTimeoutMs } = decodeOrThrow(
    PolicyParams,
    { overridable: params.overridable, allowContentParts: params.allowContentParts, providerTimeoutMs: params.providerTimeoutMs },
    `LLModel '${endpoint}'.params`,
  );
  return {
    overridable: new Set(overridable),
    allowContentParts: allowContentParts === true,
    ...(providerTimeoutMs !== undefined ? { providerTimeoutMs } : {}),
  };
}

/** The default policy: sampling fields only, string content only. */
export const STRICT_POLICY: CallerPolicy = { overridable: new Set(), allowContentParts: false };

/**
 * The largest `max_tokens` a caller gets: the smaller of the configured `max_tokens` and
 * `max_completion_tokens` (the model's `defaultConfig` with the prompt's `invocationConfig` over
 * it), or undefined when neither is set.
 */
export function tokenLimit(configured: Readonly<Record<string, unknown>>): number | undefined {
  const a = configured.max_tokens;
  const b = configured.max_completion_tokens;
  const limit = Math.min(typeof a === 'number' ? a : Infinity, typeof b === 'number' ? b : Infinity);
  return limit === Infinity ? undefined : limit;
}

/**
 * The fields of a caller's `invocationConfig` that go to the provider: one pass over its keys.
 * Sampling fields are type-checked, `max_tokens`/`max_completion_tokens` capped at `limit`, fields
 * in `policy.overridable` passed as they are, `null`s left out (OpenAI's "the default"); anything
 * else throws an {@link InvalidRequest} naming it.
 */
export function callerConfig(own: unknown, policy: CallerPolicy, limit: number | undefined, endpoint: string): Record<string, unknown> {
  if (own === null || typeof own !== 'object' || Array.isArray(own)) {
    throw invalidRequest(
      'invocationConfig',
      `LLModel '${endpoint}': 'invocationConfig' must be an object of sampling fields, got ${describeValue(own)}`,
    );
  }
  const out: Record<string, unknown> = {};
  for (const field in own) {
    if (!Object.hasOwn(own, field)) continue;
    let value = (own as Record<string, unknown>)[field];
    if (value === null || value === undefined) continue;
    if (Object.hasOwn(CHECKS, field)) {
      const problem = samplingFieldProblem(field, value);
      if (problem !== undefined) throw invalidRequest(field, `LLModel '${endpoint}': invocationConfig.${field} ${problem}`);
      if (limit !== undefined && (field === 'max_tokens' || field === 'max_completion_tokens') && (value as number) > limit) value = limit;
    } else if (!policy.overridable.has(field)) {
      throw invalidRequest(
        field,
        `LLModel '${endpoint}': invocationConfig.${field} is not a field callers may set; they may set ${SAMPLING_FIELDS.join(', ')}` +
          (policy.overridable.size > 0 ? `, and here ${[...policy.overridable].join(', ')}` : '') +
          ' (the endpoint can allow more with params.overridable)',
      );
    }
    out[field] = value;
  }
  return out;
}

/** Roles a caller's message may have; `tool` only where `tools` is overridable. */
const ROLES = new Set(['system', 'developer', 'user', 'assistant']);
/** Roles that instruct the model: a caller may not add them after a template's messages. */
const INSTRUCTING = new Set(['system', 'developer']);

/**
 * A caller's messages, copied field by field (`role`, `content`, `name`; `tool_calls` and
 * `tool_call_id` where `tools` is overridable), so nothing else reaches the provider. After a
 * template's messages (`afterTemplate`) the `system` and `developer` roles are refused; content is
 * a string unless `policy.allowContentParts`. A wrong message throws an {@link InvalidRequest}
 * naming it (`messages[2].role`).
 */
export function callerMessages(
  messages: readonly unknown[],
  afterTemplate: boolean,
  policy: CallerPolicy,
  endpoint: string,
): ChatMessage[] {
  const tools = policy.overridable.has('tools');
  const out: ChatMessage[] = new Array<ChatMessage>(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const at = `messages[${i}]`;
    const m = messages[i];
    if (m === null || typeof m !== 'object' || Array.isArray(m)) {
      throw invalidRequest(at, `LLModel '${endpoint}': ${at} must be a { role, content } object, got ${describeValue(m)}`);
    }
    const message: Record<string, unknown> = {};
    for (const key in m) {
      if (!Object.hasOwn(m, key)) continue;
      const value = (m as Record<string, unknown>)[key];
      switch (key) {
        case 'role': {
          if (typeof value !== 'string' || !(ROLES.has(value) || (tools && value === 'tool'))) {
            const roles = tools ? 'system, developer, user, assistant or tool' : 'system, developer, user or assistant';
            throw invalidRequest(`${at}.role`, `LLModel '${endpoint}': ${at}.role must be ${roles}, got ${describeValue(value)}`);
          }
          if (afterTemplate && INSTRUCTING.has(value)) {
            throw invalidRequest(
              `${at}.role`,
              `LLModel '${endpoint}': ${at}.role '${value}' is refused: the endpoint's prompt template gives the instructions, a caller's messages are user or assistant turns`,
            );
          }
          message.role = value;
          break;
        }
        case 'content':
          if (typeof value === 'string' || (value === null && tools)) message.content = value;
          else if (Array.isArray(value) && policy.allowContentParts) message.content = value;
          else {
            throw invalidRequest(
              `${at}.content`,
              `LLModel '${endpoint}': ${at}.content must be a string` +
                (Array.isArray(value) ? ' (content parts such as images need params.allowContentParts)' : `, got ${describeValue(value)}`),
            );
          }
          break;
        case 'name':
          if (value !== null && value !== undefined) {
            if (typeof value !== 'string')
              throw invalidRequest(`${at}.name`, `LLModel '${endpoint}': ${at}.name must be a string, got ${describeValue(value)}`);
            message.name = value;
          }
          break;
        default:
          if (value === null || value === undefined) break;
          if (tools && (key === 'tool_calls' || key === 'tool_call_id')) {
            message[key] = value;
            break;
          }
          throw invalidRequest(
            `${at}.${key}`,
            `LLModel '${endpoint}': ${at}.${key} is not a field a caller's message may have (role, content, name)`,
          );
      }
    }
    if (message.role === undefined) throw invalidRequest(`${at}.role`, `LLModel '${endpoint}': ${at} has no role`);
    // An assistant turn that called tools may leave its content out.
    if (message.content === undefined && !(tools && message.tool_calls !== undefined)) {
      throw invalidRequest(`${at}.content`, `LLModel '${endpoint}': ${at} has no content`);
    }
    out[i] = message as unknown as ChatMessage;
  }
  return out;
}

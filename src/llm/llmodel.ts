// LLModel: prompt-template models over LLM providers, returning { answer, usage }.
import { Observable, Subject } from 'rxjs';
import { ModelLoadError, ProviderError, toError } from '../errors.js';
import type { LLMPromptArtifact, ModelArtifact } from '../model/artifact.js';
import { Model, type ModelInit, type PredictContext } from '../model/model.js';
import { isPromptArtifact } from '../model/artifact.js';
import { callerConfig, callerPolicy, tokenLimit, type CallerPolicy } from './invocation.js';
import { buildMessages, type ChatMessage } from './prompt.js';
import type { LLMProvider } from './providers/contract.js';
import { createProvider } from './providers/provider.js';
import { restateProviderError, withRetries } from './retry.js';
import { estimateUsage, type Usage } from './usage.js';

const noop = (): void => undefined;

/** What an LLModel returns (the runner writes it at `resultPath`). */
export interface LLMResult {
  readonly answer: string;
  readonly usage: Usage;
}

/** How a call ended, with the tokens it spent; reported on `usage$` for every call. */
export interface LLMUsageReport {
  /** The endpoint that asked (`ctx.origin`: a proxy's name for a shared model). */
  readonly endpointName: string;
  readonly eventId: string;
  readonly outcome: 'success' | 'error' | 'timeout' | 'unsubscribe';
  /** Partial usage (`complete: false`) unless the call succeeded. */
  readonly usage: Usage;
}

/** What `predictStream` emits: answer chunks, then one final result. */
export type LLMStreamEvent = { readonly type: 'chunk'; readonly text: string } | ({ readonly type: 'final' } & LLMResult);

/**
 * A prompt-template model over an LLM provider, registered as `'LLModel'` (MLRun's LLModel).
 *
 * Its artifact is a prompt artifact (template, legend, invocation config over a model artifact)
 * or a model artifact (the input then supplies `messages`). Per call it fills the template from
 * the input, merges `invocationConfig` over the model's `defaultConfig`, invokes the provider
 * chosen by the model URL (`openai://`, `huggingface://`, `mock://`) and returns
 * `{ answer, usage }`. As a shared model it answers each proxy with that proxy's prompt
 * (`ctx.origin`). Retryable failures (429, 5xx, dropped connections) are retried with backoff,
 * at most `params.maxRetries` (default 2) times. Every call's usage is reported on `usage$`.
 *
 * What a caller may change is the endpoint owner's to say (docs/design.md §10): an input's
 * `invocationConfig` may set only the sampling fields (`temperature`, `top_p`, `max_tokens`,
 * `max_completion_tokens`, `stop`, `seed`, `presence_penalty`, `frequency_penalty`, `stream`),
 * each type-checked, `max_tokens` capped at the configured one; other fields need
 * `params.overridable`. A caller's messages have string content (`params.allowContentParts` for
 * images and files) and no `system` turn after a template's. A refusal is a `TypeError` naming the
 * field in its message and its `param`. `params.providerTimeoutMs` limits each provider attempt.
 *
 * ## Example
 * ```ts
 * import { llmPromptArtifact, modelArtifact } from 'rxserve';
 * const gpt = modelArtifact({ key: 'gpt', modelUrl: 'openai://gpt-4o-mini' });
 * const finance = llmPromptArtifact({ key: 'finance', model: gpt,
 *   promptTemplate: [{ role: 'user', content: 'As a financial advisor: {question}' }] });
 * const entry = { endpointName: 'finance', modelClass: 'LLModel', executionMechanism: 'asyncio',
 *                 modelArtifact: finance, resultPath: 'output' };
 * // body { question } → body.output = { answer, usage }
 * ```
 */
export class LLModel extends Model<unknown, LLMResult> {
  /** Every call returns `{ answer, usage }`: monitoring records those columns, as MLRun forces them. */
  static override readonly monitoredOutputs: readonly string[] = ['answer', 'usage'];

  /** Usage of every call, whatever its outcome. */
  readonly usage$ = new Subject<LLMUsageReport>();
  private provider: LLMProvider | undefined;
  /** A load started by the first call when nobody called `load()` (see `loadedProvider`). */
  private loading: Promise<void> | undefined;
  private readonly proxyArtifacts: Readonly<Record<string, ModelArtifact | LLMPromptArtifact | null>>;
  /** What callers may change (`params.overridable`, `params.allowContentParts`), read once. */
  private readonly policy: CallerPolicy;
  /** Per prompt (or model artifact): its merged config and token limit, computed on first use. */
  private readonly configs = new WeakMap<
    object,
    { readonly config: Readonly<Record<string, unknown>>; readonly limit: number | undefined }
  >();

  constructor(init: ModelInit) {
    super(init);
    this.proxyArtifacts = (init.proxyArtifacts as Record<string, ModelArtifact | LLMPromptArtifact | null> | undefined) ?? {};
    this.policy = callerPolicy(this.params, this.name);
  }

  /** The model artifact calls go to (a prompt's parent, or the artifact itself). */
  get modelArtifact(): ModelArtifact | undefined {
    const own = this.artifact;
    if (own !== undefined) return isPromptArtifact(own) ? own.model : own;
    const proxy = Object.values(this.proxyArtifacts).find((a) => a != null);
    return proxy ? (isPromptArtifact(proxy) ? proxy.model : proxy) : undefined;
  }

  override async load(): Promise<void> {
    const model = this.modelArtifact;
    if (model === undefined) {
      if (this.predict !== LLModel.prototype.predict) return; // a subclass with its own predict needs no provider
      throw new ModelLoadError(
        this.name,
        `the model provider could not be determined (no model artifact with a modelUrl), and predict() was not overridden`,
      );
    }
    this.provider = await createProvider(model, this.name);
  }

  /**
   * The provider, loading it on first use when `load()` was not awaited (an LLModel used on its
   * own, outside modelRunner). Concurrent first calls share one load; a failed load is not kept,
   * so the next call tries again. A subclass that overrides `predict()` and has no model artifact
   * has no provider: `predictStream` says so.
   */
  private async loadedProvider(): Promise<LLMProvider> {
    if (this.provider === undefined) {
      this.loading ??= this.load()
        .catch((error: unknown) => {
          throw error instanceof ModelLoadError ? error : new ModelLoadError(this.name, toError(error).message, { cause: error });
        })
        .finally(() => (this.loading = undefined));
      await this.loading;
    }
    if (this.provider === undefined) {
      throw new ModelLoadError(this.name, 'it has no model provider (no model artifact with a modelUrl): predictStream() needs one');
    }
    return this.provider;
  }

  /** The prompt used for a caller: the proxy's own when it has one, else the model's. */
  promptFor(origin: string): LLMPromptArtifact | undefined {
    const proxy = this.proxyArtifacts[origin];
    if (proxy != null && isPromptArtifact(proxy)) return proxy;
    return isPromptArtifact(this.artifact) ? this.artifact : undefined;
  }

  /**
   * The messages and config of one call. The owner's config (the model's `defaultConfig` under the
   * prompt's `invocationConfig`) is merged once per prompt; a caller's `invocationConfig` goes
   * over it through `callerConfig` (one pass over its few keys), so a call without one costs a
   * lookup.
   */
  private prepare(input: unknown, origin: string): { messages: ChatMessage[]; config: Readonly<Record<string, unknown>> } {
    const prompt = this.promptFor(origin);
    const messages = buildMessages(prompt, input, origin, this.policy);
    const owner = this.ownerConfig(prompt);
    const own = input !== null && typeof input === 'object' ? (input as { invocationConfig?: unknown }).invocationConfig : undefined;
    if (own === undefined) return { messages, config: owner.config };
    return { messages, config: { ...owner.config, ...callerConfig(own, this.policy, owner.limit, origin) } };
  }

  private ownerConfig(prompt: LLMPromptArtifact | undefined): {
    readonly config: Readonly<Record<string, unknown>>;
    readonly limit: number | undefined;
  } {
    const key: object = prompt ?? this.modelArtifact ?? this;
    let known = this.configs.get(key);
    if (known === undefined) {
      const config = { ...this.modelArtifact?.defaultConfig, ...prompt?.invocationConfig };
      known = { config, limit: tokenLimit(config) };
      this.configs.set(key, known);
    }
    return known;
  }

  /**
   * One provider attempt under `params.providerTimeoutMs`: the attempt gets a signal of its own,
   * aborted with a timed-out `ProviderError` (retryable; answered 504 by serve()) when no answer
   * — when streaming, no first token (`firstToken()` stops the clock) — came in time. Without the
   * param the attempt runs on `signal` itself.
   */
  private attempt<T>(
    provider: LLMProvider,
    signal: AbortSignal,
    streaming: boolean,
    run: (signal: AbortSignal, firstToken: () => void) => Promise<T>,
  ): Promise<T> {
    const ms = this.policy.providerTimeoutMs;
    // No limit: the attempt itself, without a promise of its own around it.
    return ms === undefined ? run(signal, noop) : this.timedAttempt(provider, signal, streaming, ms, run);
  }

  private async timedAttempt<T>(
    provider: LLMProvider,
    signal: AbortSignal,
    streaming: boolean,
    ms: number,
    run: (signal: AbortSignal, firstToken: () => void) => Promise<T>,
  ): Promise<T> {
    signal.throwIfAborted();
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => {
      const what = streaming ? 'no first token' : 'no answer';
      controller.abort(
        new ProviderError(`${provider.name} '${provider.model}': ${what} within ${ms} ms (params.providerTimeoutMs)`, undefined, true, {
          timedOut: true,
        }),
      );
    }, ms);
    try {
      return await run(controller.signal, () => clearTimeout(timer));
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }

  private get retries() {
    return {
      maxRetries: typeof this.params.maxRetries === 'number' ? this.params.maxRetries : 2,
      baseDelayMs: typeof this.params.retryBaseMs === 'number' ? this.params.retryBaseMs : 250,
    };
  }

  override async predict(input: unknown, ctx: PredictContext): Promise<LLMResult> {
    const provider = await this.loadedProvider();
    const { messages, config: prepared } = this.prepare(input, ctx.origin);
    const { stream, ...config } = prepared;
    if ((stream ?? this.params.stream) === true) return this.predictStreaming(provider, messages, config, ctx);
    try {
      const result = await withRetries(
        () => this.attempt(provider, ctx.signal, false, (signal) => provider.invoke({ messages, config, signal })),
        {
          ...this.retries,
          signal: ctx.signal,
        },
      );
      this.report(ctx, 'success', result.usage);
      return { answer: result.answer, usage: result.usage };
    } catch (error) {
      throw this.fail(error, ctx, messages, '');
    }
  }

  /**
   * `stream: true`: the provider streams, each chunk is published as `ctx.emit({ delta })`, and the
   * result is the whole answer with its usage, as without streaming.
   */
  private async predictStreaming(
    provider: LLMProvider,
    messages: ChatMessage[],
    config: Record<string, unknown>,
    ctx: PredictContext,
  ): Promise<LLMResult> {
    const progress = { answer: '' };
    try {
      const usage = await this.streamAnswer(provider, messages, config, ctx.signal, progress, (delta) => ctx.emit?.({ delta }));
      const final = usage ?? estimateUsage(messages, progress.answer);
      this.report(ctx, 'success', final);
      return { answer: progress.answer, usage: final };
    } catch (error) {
      throw this.fail(error, ctx, messages, progress.answer);
    }
  }

  /**
   * Streams one answer into `progress.answer`, calling `onDelta` per chunk; resolves with the
   * server's usage, if it sent one. Only failures before the first chunk are retried (a retry
   * after it would repeat text). Throws the signal's reason when aborted, even if the client ended
   * its stream quietly (openai's Stream returns on abort).
   */
  private async streamAnswer(
    provider: LLMProvider,
    messages: ChatMessage[],
    config: Record<string, unknown>,
    signal: AbortSignal,
    progress: { answer: string },
    onDelta: (delta: string) => void,
  ): Promise<Usage | undefined> {
    let usage: Usage | undefined;
    await withRetries(
      () =>
        this.attempt(provider, signal, true, async (attemptSignal, firstToken) => {
          try {
            for await (const part of provider.stream({ messages, config, signal: attemptSignal })) {
              if ('delta' in part) {
                if (progress.answer.length === 0) firstToken();
                progress.answer += part.delta;
                onDelta(part.delta);
              } else usage = part.usage;
            }
          } catch (error) {
            if (progress.answer.length > 0 && error instanceof ProviderError && error.retryable) {
              throw restateProviderError(error, `${error.message} (after the first token: not retried)`, false);
            }
            throw error;
          }
        }),
      { ...this.retries, signal },
    );
    signal.throwIfAborted();
    return usage;
  }

  /**
   * Streams the answer: `{ type: 'chunk', text }` as tokens arrive, then
   * `{ type: 'final', answer, usage }`. OpenAI streams report usage
   * (`stream_options.include_usage`). Retries happen only before the first chunk. Unsubscribing
   * aborts the request; usage is reported on `usage$` exactly once per call, with the outcome
   * that happened (`success`, `error`, `timeout`, `unsubscribe`), partial ones marked
   * `complete: false`. Without a usage chunk from the server the usage is estimated
   * (`total_tokens = prompt_tokens + completion_tokens`). Loads the model on first use when
   * `load()` was not awaited.
   */
  predictStream(input: unknown, ctx: { origin?: string; eventId?: string; signal?: AbortSignal } = {}): Observable<LLMStreamEvent> {
    return new Observable<LLMStreamEvent>((subscriber) => {
      const controller = new AbortController();
      const origin = ctx.origin ?? this.name;
      const context: PredictContext = { origin, eventId: ctx.eventId ?? '', signal: controller.signal };
      const onOuterAbort = () => controller.abort(ctx.signal?.reason);
      ctx.signal?.addEventListener('abort', onOuterAbort, { once: true });
      let messages: ChatMessage[] = [];
      let finished = false;
      const progress = { answer: '' };
      const run = async () => {
        const provider = await this.loadedProvider();
        const prepared = this.prepare(input, origin);
        messages = prepared.messages;
        const { stream: _stream, ...config } = prepared.config;
        const usage = await this.streamAnswer(provider, messages, config, controller.signal, progress, (text) =>
          subscriber.next({ type: 'chunk', text }),
        );
        // Unsubscribed: the teardown reported the call.
        if (finished) return;
        const { answer } = progress;
        const final = usage ?? estimateUsage(messages, answer);
        finished = true;
        this.report(context, 'success', final);
        subscriber.next({ type: 'final', answer, usage: final });
        subscriber.complete();
      };
      run().catch((error: unknown) => {
        if (finished) return; // unsubscribed: reported once, by the teardown
        finished = true;
        subscriber.error(this.fail(error, context, messages, progress.answer));
      });
      return () => {
        ctx.signal?.removeEventListener('abort', onOuterAbort);
        if (!finished) {
          finished = true;
          controller.abort(new DOMException('the stream was unsubscribed', 'AbortError'));
          this.report(context, 'unsubscribe', estimateUsage(messages, progress.answer, false));
        }
      };
    });
  }

  /** Reports partial usage for a failed call and returns the error to throw. */
  private fail(error: unknown, ctx: PredictContext, messages: readonly ChatMessage[], answer: string): Error {
    const reason = ctx.signal.aborted ? toError(ctx.signal.reason) : undefined;
    const outcome = reason ? (reason.name === 'ModelTimeoutError' ? 'timeout' : 'unsubscribe') : 'error';
    const usage = estimateUsage(messages, answer, false);
    this.report(ctx, outcome, usage);
    const e = toError(error);
    if (e instanceof ProviderError) e.usage = usage;
    return e;
  }

  private report(ctx: PredictContext, outcome: LLMUsageReport['outcome'], usage: Usage): void {
    this.usage$.next({ endpointName: ctx.origin, eventId: ctx.eventId, outcome, usage });
  }

  override close(): void {
    this.usage$.complete();
  }
}

// The executor modelRunner uses unless given one: it routes each model to its mechanism's executor.
import { ConfigError, toError } from '../errors.js';
import type { ExecutionMechanism, ModelEntry } from '../model/entry.js';
import type { PredictContext } from '../model/model.js';
import type { CallResult, Executor, ExecutorHooks, ExecutorSession } from './executor.js';
import { inProcessExecutor } from './inProcess.js';
import { onResult } from './callResult.js';
import type { PoolOptions } from './poolOptions.js';
import { dedicatedProcessExecutor, processPoolExecutor } from './processPool.js';
import { threadPoolExecutor } from './threadPool.js';

/**
 * The executor a step uses unless given one: it opens one session per mechanism used by the step
 * (the models of a pool mechanism share one pool) and routes each call to its model's session.
 * `shared_executor` entries come from a graph's `sharedModelProxy()` and are refused here.
 */
export function createDefaultExecutor(pool: PoolOptions = {}, shared?: Executor): Executor {
  const executors: Partial<Record<ExecutionMechanism, Executor>> = {
    naive: inProcessExecutor,
    asyncio: inProcessExecutor,
    thread_pool: threadPoolExecutor(pool),
    process_pool: processPoolExecutor(pool),
    dedicated_process: dedicatedProcessExecutor(pool),
    ...(shared ? { shared_executor: shared } : {}),
  };
  return { open: (models, hooks) => openByMechanism(executors, models, hooks) };
}

function openByMechanism(
  executors: Partial<Record<ExecutionMechanism, Executor>>,
  models: readonly ModelEntry[],
  hooks: ExecutorHooks,
): ExecutorSession {
  {
    const groups = new Map<Executor, ModelEntry[]>();
    for (const entry of models) {
      const executor = executors[entry.executionMechanism];
      if (executor === undefined && entry.executionMechanism === 'shared_executor') {
        throw new ConfigError([
          {
            path: `${hooks.step}.models['${entry.endpointName}'].executionMechanism`,
            expected:
              "a step of the graph that made this proxy: use graph.modelRunner(...) or modelRunner({ graph, ... }) ('shared_executor' is set by graph.sharedModelProxy())",
            actual: "'shared_executor' in a step without a graph",
          },
        ]);
      }
      if (executor === undefined) {
        throw new ConfigError([
          {
            path: `${hooks.step}.models['${entry.endpointName}'].executionMechanism`,
            expected: `a mechanism this version runs (${Object.keys(executors).join(', ')})`,
            actual: `'${entry.executionMechanism}'`,
          },
        ]);
      }
      const group = groups.get(executor);
      if (group) group.push(entry);
      else groups.set(executor, [entry]);
    }
    if (groups.size === 1) {
      const [[executor, group]] = groups;
      return executor.open(group, hooks);
    }
    return combine(groups, hooks);
  }
}

function combine(groups: Map<Executor, ModelEntry[]>, hooks: ExecutorHooks): ExecutorSession {
  const byModel = new Map<string, ExecutorSession>();
  const sessions: ExecutorSession[] = [];
  try {
    for (const [executor, group] of groups) {
      const session = executor.open(group, hooks);
      sessions.push(session);
      for (const entry of group) byModel.set(entry.endpointName, session);
    }
  } catch (error) {
    // A later mechanism could not open: release the pools already started.
    for (const session of sessions) void Promise.resolve(session.close()).catch(() => undefined);
    throw error;
  }
  const pending = sessions.filter((s) => s.ready !== undefined).map((s) => s.ready);
  return {
    ...(pending.length ? { ready: Promise.all(pending).then(() => undefined) } : {}),
    invoke(endpointName: string, input: unknown, context: PredictContext): CallResult {
      return byModel.get(endpointName)!.invoke(endpointName, input, context);
    },
    invokeBatch(endpointName: string, inputs: readonly unknown[], contexts: readonly PredictContext[]): CallResult {
      const session = byModel.get(endpointName)!;
      if (session.invokeBatch) return session.invokeBatch(endpointName, inputs, contexts);
      return invokeEach(session, endpointName, inputs, contexts);
    },
    async close() {
      await Promise.all(sessions.map((s) => s.close()));
    },
  };
}

/** A batch for a session without `invokeBatch`: one `invoke` per input, each failure its own element. */
function invokeEach(
  session: ExecutorSession,
  endpointName: string,
  inputs: readonly unknown[],
  contexts: readonly PredictContext[],
): Promise<unknown[]> {
  return Promise.all(
    inputs.map(
      (input, i) =>
        new Promise<unknown>((resolve) => {
          onResult(
            () => session.invoke(endpointName, input, contexts[i]),
            resolve,
            (error) => resolve(toError(error)),
          );
        }),
    ),
  );
}

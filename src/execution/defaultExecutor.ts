// The executor modelRunner uses unless given one: it routes each model to its mechanism's executor.
import { ConfigError } from '../errors.js';
import type { ExecutionMechanism, ModelEntry } from '../model/entry.js';
import type { PredictContext } from '../model/model.js';
import type { CallResult, Executor, ExecutorHooks, ExecutorSession } from './executor.js';
import { inProcessExecutor } from './inProcess.js';

const executors: Partial<Record<ExecutionMechanism, Executor>> = {
  naive: inProcessExecutor,
  asyncio: inProcessExecutor,
};

/**
 * Opens one session per mechanism used by the step and routes each call to its model's session.
 * Mechanisms without an executor yet are refused with a `ConfigError` naming the model.
 */
export const defaultExecutor: Executor = {
  open(models: readonly ModelEntry[], hooks: ExecutorHooks): ExecutorSession {
    const groups = new Map<Executor, ModelEntry[]>();
    for (const entry of models) {
      const executor = executors[entry.executionMechanism];
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
  },
};

function combine(groups: Map<Executor, ModelEntry[]>, hooks: ExecutorHooks): ExecutorSession {
  const byModel = new Map<string, ExecutorSession>();
  const sessions: ExecutorSession[] = [];
  for (const [executor, group] of groups) {
    const session = executor.open(group, hooks);
    sessions.push(session);
    for (const entry of group) byModel.set(entry.endpointName, session);
  }
  const pending = sessions.filter((s) => s.ready).map((s) => s.ready);
  return {
    ...(pending.length ? { ready: Promise.all(pending).then(() => undefined) } : {}),
    invoke(endpointName: string, input: unknown, context: PredictContext): CallResult {
      return byModel.get(endpointName)!.invoke(endpointName, input, context);
    },
    async close() {
      await Promise.all(sessions.map((s) => s.close()));
    },
  };
}

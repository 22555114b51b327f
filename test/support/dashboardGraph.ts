// The graph the dashboard suite and example serve: three endpoints in three steps, one of them a
// proxy to a shared LLM (mock provider, so token usage is reported), one that fails on demand,
// one slow enough behind a small queue that bursts are rejected with QueueFullError.
import { Model, createGraph, modelArtifact, router, type Graph, type ServingEvent } from '../../src/index.js';
import type { OperatorFunction } from 'rxjs';

class Score extends Model<{ x?: number }, { score: number }> {
  override async predict(body: { x?: number }) {
    await new Promise((resolve) => setTimeout(resolve, 60));
    return { score: (body.x ?? 0) * 2 };
  }
}
class Check extends Model<{ fail?: boolean }, { ok: true }> {
  override predict(body: { fail?: boolean }) {
    if (body.fail) throw new RangeError('asked to fail');
    return { ok: true as const };
  }
}

export function dashboardGraph(): { graph: Graph; pipeline: OperatorFunction<ServingEvent, ServingEvent> } {
  const graph = createGraph({ name: 'shop' });
  graph.addSharedModel({
    name: 'llm',
    modelClass: 'LLModel',
    executionMechanism: 'asyncio',
    modelArtifact: modelArtifact({ key: 'm', modelUrl: 'mock://' }),
  });
  const scorer = graph.modelRunner({
    name: 'scorer',
    models: [{ endpointName: 'score', modelClass: Score, executionMechanism: 'asyncio' }],
    maxInFlight: 2,
    maxQueue: 2,
  });
  const checker = graph.modelRunner({
    name: 'checker',
    models: [{ endpointName: 'check', modelClass: Check, executionMechanism: 'naive' }],
  });
  const advisor = graph.modelRunner({
    name: 'advisor',
    models: [graph.sharedModelProxy({ endpointName: 'advice', sharedModelName: 'llm' })],
  });
  const pipeline = router({ key: (e) => e.path?.slice(1), routes: { score: scorer, check: checker, advice: advisor } });
  return { graph, pipeline };
}

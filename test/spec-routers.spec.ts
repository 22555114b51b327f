// The router family in specs (docs/design.md §14, §18): modelRouter, parallelRun and votingEnsemble as step
// kinds, their routes lists of steps; mistakes named by path; the schema; the graph's description.
import { fileURLToPath } from 'node:url';
import { from, lastValueFrom, toArray } from 'rxjs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadGraph, serve, toEvent, type ServingEvent } from '../src/index.js';
import { specSchema } from '../src/spec/graphSpec.js';
import { MONITORING, type Monitored } from '../src/monitoring/monitor.js';
import { ModelRouterConfigCodec } from '../src/operators/modelRouter.js';
import { ParallelRunConfigCodec } from '../src/operators/parallelRun.js';
import { VotingEnsembleConfigCodec } from '../src/operators/votingEnsemble.js';

const baseDir = fileURLToPath(new URL('./fixtures/', import.meta.url));
const model = (endpointName: string, exportName: string, params: Record<string, unknown> = {}) => ({
  modelRunner: {
    name: endpointName,
    models: [{ endpointName, modelClass: { module: './routerModels.mjs', export: exportName }, executionMechanism: 'naive', params }],
  },
});
const ROWS = [
  [0.9, 0.9, 0.1],
  [0.1, 0.2, 0.9],
];

const spec = {
  name: 'family',
  steps: [
    {
      modelRouter: {
        name: 'front',
        routes: {
          // a route named like the model it serves: the KServe layout, accepted
          a: [model('a', 'Threshold', { feature: 0 })],
          forest: [
            {
              votingEnsemble: {
                name: 'forest',
                weights: { b: 1, c: 1, d: 1 },
                routes: {
                  b: [model('b', 'Threshold', { feature: 0 })],
                  c: [model('c', 'Threshold', { feature: 1 })],
                  d: [model('d', 'Threshold', { feature: 2 })],
                },
              },
            },
          ],
          both: [
            { parallelRun: { name: 'both', routes: { x: [model('x', 'Field', { key: 'x2' })], y: [model('y', 'Field', { key: 'y2' })] } } },
          ],
        },
      },
    },
  ],
};

describe('the router family in a spec', () => {
  it('builds the steps the spec describes; the graph describes them with their routes; serve() lists the routes', async () => {
    const { graph, pipeline } = await loadGraph(spec, { baseDir });
    try {
      const events = [
        toEvent({ inputs: ROWS }, { id: 'a', path: '/v2/models/a/infer' }),
        toEvent({ inputs: ROWS }, { id: 'forest', path: '/v2/models/forest/infer' }),
        toEvent({ x: 4 }, { id: 'both', path: '/v2/models/both/hello' }),
      ];
      const out = await lastValueFrom(from(events).pipe(pipeline, toArray()));
      const byId = Object.fromEntries(out.map((e: ServingEvent) => [e.id, e.error ? e.error.message : e.body]));
      expect(byId.a).toMatchObject({ model_name: 'a', outputs: [1, 0] });
      // the ensemble nested as route 'forest' under the same prefix reads the same path: its own name, all vote;
      // its V2 answer's outputs become the router's
      expect(byId.forest).toMatchObject({ model_name: 'forest', outputs: [1, 0] });
      // a custom operation passes through parallelRun to its routes' models, which have no op_hello
      expect(byId.both).toMatch(/x failed \(TypeError: model 'x' has no operation 'hello'/);
      const shape = (graph as unknown as Monitored)[MONITORING].describe();
      expect(shape.routers).toEqual([
        { step: 'forest', kind: 'votingEnsemble', routes: ['b', 'c', 'd'] },
        { step: 'both', kind: 'parallelRun', routes: ['x', 'y'] },
        { step: 'front', kind: 'modelRouter', routes: ['a', 'forest', 'both'] },
      ]);
      const server = await serve(pipeline, { port: 0, graph });
      try {
        const listed = await (await fetch(`${server.url}/v2/models`)).json();
        expect(listed).toEqual({ models: ['a', 'forest', 'both'] });
      } finally {
        await server.close();
      }
    } finally {
      await graph.close();
    }
  });

  it("names the path of a mistake inside the family's routes and options", async () => {
    const reject = async (s: object): Promise<ConfigError> => {
      const error = await loadGraph(s, { baseDir }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ConfigError);
      return error as ConfigError;
    };
    const weights = await reject({ steps: [{ votingEnsemble: { routes: { b: [model('b', 'Threshold')] }, weights: { z: 1 } } }] });
    expect(weights.message).toBe("steps[0].votingEnsemble.weights.z: expected the weight of a route ('b'), got no route 'z'");
    const deep = await reject({
      steps: [
        {
          modelRouter: {
            routes: { m: [{ modelRunner: { models: [{ endpointName: 'm', modelClass: 'X', executionMechanism: 'naive', params: 3 }] } }] },
          },
        },
      ],
    });
    expect(deep.issues.map((i) => i.path)).toEqual(['steps[0].modelRouter.routes.m[0].modelRunner.models[0].params']);
    const typo = await reject({ steps: [{ parallelRun: { routes: {}, extendEvnet: true } }] });
    expect(typo.issues.map((i) => i.path)).toEqual(['steps[0].parallelRun.extendEvnet']);
    const empty = await reject({ steps: [{ parallelRun: { routes: {} } }] });
    expect(empty.message).toBe('steps[0].parallelRun.routes: expected at least one route, got {}');
    const vote = await reject({ steps: [{ votingEnsemble: { routes: { b: [model('b', 'Threshold')] }, voteType: 'mean' } }] });
    expect(vote.issues.map((i) => i.path)).toEqual(['steps[0].votingEnsemble.voteType']);
    const duplicate = await reject({
      steps: [{ modelRouter: { routes: { a: [model('m', 'Threshold')], b: [model('m', 'Threshold')] } } }],
    });
    expect(duplicate.message).toContain("'m', already used at steps[0].modelRouter.routes.a[0].modelRunner.models[0].endpointName");
  });

  it('the JSON Schema has the three kinds with every runtime field, and accepts the spec', () => {
    const defs = specSchema().$defs as Record<string, { properties: Record<string, { properties: object }> }>;
    const fields = (codec: { required: object; optional: object }) => Object.keys({ ...codec.required, ...codec.optional }).sort();
    expect(Object.keys(defs.Step.properties.modelRouter.properties).sort()).toEqual(fields(ModelRouterConfigCodec));
    expect(Object.keys(defs.Step.properties.parallelRun.properties).sort()).toEqual(fields(ParallelRunConfigCodec));
    expect(Object.keys(defs.Step.properties.votingEnsemble.properties).sort()).toEqual(fields(VotingEnsembleConfigCodec));
    const validate = new Ajv2020({ strict: false }).compile(specSchema());
    expect(validate(spec), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ steps: [{ votingEnsemble: { routes: { a: [] }, voteType: 'mean' } }] })).toBe(false);
  });
});

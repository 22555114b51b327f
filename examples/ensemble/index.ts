// ensemble: three iris classifiers on thread_pool workers, voted by votingEnsemble (MLRun's
// VotingEnsemble) and served over HTTP with the V2 protocol: infer on the ensemble or on one
// model, explain, a custom operation, metadata, the model list, and a bad request.
import { modelRunner, registerModel, serve, votingEnsemble, type ModelEntry } from 'rxserve';

// Workers load the classes by module reference.
const classes = new URL('./classifiers.mjs', import.meta.url).href;
registerModel('Stump', { module: classes, export: 'Stump' });
registerModel('NearestCentroid', { module: classes, export: 'NearestCentroid' });

const FEATURES = ['sepal_length', 'sepal_width', 'petal_length', 'petal_width'];
const CENTROIDS = [
  [5.0, 3.4, 1.5, 0.2],
  [5.9, 2.8, 4.3, 1.3],
  [6.6, 3.0, 5.6, 2.0],
];
/** One route per classifier: a modelRunner of one model on a worker thread. */
const route = (entry: Omit<ModelEntry, 'executionMechanism'>) =>
  modelRunner({
    name: entry.endpointName,
    models: [{ ...entry, executionMechanism: 'thread_pool', inputs: FEATURES, outputs: ['species'] }],
    pool: { maxThreads: 1 },
  });

const ensemble = votingEnsemble({
  name: 'iris',
  routes: {
    length: route({ endpointName: 'length', modelClass: 'Stump', params: { feature: 2, cuts: [2.5, 4.9] } }),
    width: route({ endpointName: 'width', modelClass: 'Stump', params: { feature: 3, cuts: [0.8, 1.7] } }),
    centroid: route({ endpointName: 'centroid', modelClass: 'NearestCentroid', params: { centroids: CENTROIDS } }),
  },
  weights: { length: 1, width: 1, centroid: 2 }, // normalised to 0.25, 0.25, 0.5
});

const server = await serve(ensemble, { port: 0 });
let failures = 0;
const check = (what: string, ok: boolean) => {
  console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
};
async function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  return { status: response.status, body: await response.json() };
}

try {
  const rows = [
    [5.1, 3.5, 1.4, 0.2], // setosa
    [4.9, 3.0, 1.4, 0.2], // setosa
    [6.4, 3.2, 4.5, 1.5], // versicolor
    [6.0, 2.2, 5.0, 1.5], // versicolor by width and centroid, virginica by length
    [6.3, 3.3, 6.0, 2.5], // virginica
    [6.7, 3.0, 4.8, 1.9], // virginica by width and centroid, versicolor by length
    [5.9, 2.6, 5.0, 1.75], // virginica by length and width (0.25 + 0.25), versicolor by centroid (0.5): a tie, the smaller class wins
  ];
  console.log(`serving on ${server.url}`);
  const vote = await call('POST', '/v2/models/iris/infer', { inputs: rows });
  console.log('POST /v2/models/iris/infer →', JSON.stringify(vote.body));

  // The same vote by hand: each model alone over HTTP, then the weighted majority per row.
  const alone: Record<string, number[]> = {};
  for (const name of ['length', 'width', 'centroid']) {
    const answer = await call('POST', `/v2/models/${name}/infer`, { inputs: rows });
    alone[name] = answer.body.outputs;
    console.log(`POST /v2/models/${name}/infer →`, JSON.stringify(answer.body.outputs));
  }
  const weights: Record<string, number> = { length: 0.25, width: 0.25, centroid: 0.5 };
  const byHand = rows.map((_, r) => {
    const score = [0, 0, 0];
    for (const name of Object.keys(alone)) score[alone[name][r]] += weights[name];
    return score.indexOf(Math.max(...score)); // a tie goes to the smallest class
  });
  check(
    'the ensemble votes as the weighted majority of its models',
    vote.status === 200 && JSON.stringify(vote.body.outputs) === JSON.stringify(byHand),
  );
  check('every row gets its expected species', JSON.stringify(vote.body.outputs) === JSON.stringify([0, 0, 1, 1, 2, 2, 1]));

  const explained = await call('POST', '/v2/models/centroid/explain', { inputs: rows.slice(3, 4) });
  console.log('POST /v2/models/centroid/explain →', JSON.stringify(explained.body.outputs));
  check('explain answers per feature', explained.status === 200 && explained.body.outputs[0].length === 4);

  const cuts = await call('POST', '/v2/models/width/thresholds', {});
  console.log('POST /v2/models/width/thresholds →', JSON.stringify(cuts.body));
  check('a custom operation calls op_thresholds', JSON.stringify(cuts.body) === JSON.stringify({ feature: 3, cuts: [0.8, 1.7] }));

  const listed = await call('GET', '/v2/models');
  const meta = await call('GET', '/v2/models/centroid');
  const server_ = await call('GET', '/v2');
  console.log('GET /v2 →', JSON.stringify(server_.body), '· GET /v2/models →', JSON.stringify(listed.body));
  console.log('GET /v2/models/centroid →', JSON.stringify(meta.body));
  check(
    'the model list has the routes and the ensemble',
    JSON.stringify(listed.body.models) === JSON.stringify(['length', 'width', 'centroid', 'iris']),
  );
  check('metadata names the features', JSON.stringify(meta.body.inputs) === JSON.stringify(FEATURES));

  const bad = await call('POST', '/v2/models/iris/infer', { inputs: { sepal_length: 5.1 } });
  console.log(`POST with inputs that are not a list → ${bad.status}`, JSON.stringify(bad.body));
  check('a bad request is a 400 that says what was wrong', bad.status === 400 && /needs 'inputs' as a list/.test(bad.body.error));
  const unknown = await call('POST', '/v2/models/tree/infer', { inputs: rows });
  check('an unknown model is a 404', unknown.status === 404);
} finally {
  await server.close();
}
if (failures > 0) process.exit(1);

// `npm run bench [-- --quick] [-- --only a,b]`: runs every benchmark, one after another, and writes
// the figures into docs/benchmarks.md between each section's markers (overload and soak run in
// child processes of their own).
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { modelRunnerMarkdown, runModelRunner } from './modelRunner.bench.js';
import { llmMarkdown, runLLM } from './llm.bench.js';
import { llmCallersMarkdown, runLLMCallers } from './llmCallers.bench.js';
import { overloadMarkdown, runOverload } from './overload.bench.js';
import { poolsMarkdown, runPools } from './pools.bench.js';
import { remoteMarkdown, runRemote } from './remote.bench.js';
import { runScaling, scalingMarkdown } from './scaling.bench.js';
import { runServe, serveMarkdown } from './serve.bench.js';
import { runSoak, soakMarkdown } from './soak.bench.js';
import { onnxMarkdown, runOnnx } from './onnx.bench.js';
import { runStreams, streamsMarkdown } from './streams.bench.js';
import { runStreaming, streamingMarkdown } from './streaming.bench.js';
import { routersMarkdown, runRouters } from './routers.bench.js';
import { flowMarkdown, runFlow } from './flow.bench.js';

const quick = process.argv.includes('--quick');
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt >= 0 ? new Set(process.argv[onlyAt + 1]?.split(',')) : undefined;
const doc = new URL('../docs/benchmarks.md', import.meta.url);
const started = Date.now();

const sections: [string, () => Promise<string>][] = [
  ['model-runner', async () => modelRunnerMarkdown(await runModelRunner(quick))],
  ['pools', async () => poolsMarkdown(await runPools(quick))],
  ['llm', async () => llmMarkdown(await runLLM(quick))],
  ['llm-callers', async () => llmCallersMarkdown(await runLLMCallers(quick))],
  ['scaling', async () => scalingMarkdown(await runScaling(quick))],
  ['overload', async () => overloadMarkdown(await runOverload(quick))],
  ['soak', async () => soakMarkdown(await runSoak(quick))],
  ['onnx', async () => onnxMarkdown(await runOnnx(quick))],
  ['serve', async () => serveMarkdown(await runServe(quick))],
  ['streams', async () => streamsMarkdown(await runStreams(quick))],
  ['streaming', async () => streamingMarkdown(await runStreaming(quick))],
  ['routers', async () => routersMarkdown(await runRouters(quick))],
  ['remote', async () => remoteMarkdown(await runRemote(quick))],
  ['flow', async () => flowMarkdown(await runFlow(quick))],
];
if (only) for (const name of only) if (!sections.some(([n]) => n === name)) throw new Error(`--only: no benchmark named '${name}'`);

const machine = `Node ${process.version} · ${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length}`;
// Each section says when it ran, so a partial run (--only) leaves no stale figure unlabelled.
const stamp = () =>
  `_Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC${quick ? ' with --quick (fewer events, noisier)' : ''}._`;
let text = readFileSync(doc, 'utf8');
text = replaceSection(text, 'machine', machine);
for (const [name, run] of sections) {
  if (only && !only.has(name)) continue;
  const t0 = Date.now();
  process.stdout.write(`${name}... `);
  const markdown = await run();
  console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s\n${markdown}\n`);
  text = replaceSection(text, name, `${stamp()}\n\n${markdown}`);
}
writeFileSync(doc, text);
console.log(`docs/benchmarks.md updated in ${((Date.now() - started) / 1000).toFixed(0)} s`);

function replaceSection(source: string, name: string, body: string): string {
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const from = source.indexOf(start);
  const to = source.indexOf(end);
  if (from < 0 || to < from) throw new Error(`docs/benchmarks.md has no ${start} ... ${end} markers`);
  return `${source.slice(0, from + start.length)}\n${body}\n${source.slice(to)}`;
}

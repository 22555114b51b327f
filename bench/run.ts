// `npm run bench [-- --quick]`: runs every benchmark in one process, one after another, and
// writes the figures into docs/benchmarks.md between each section's markers.
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { modelRunnerMarkdown, runModelRunner } from './modelRunner.bench.js';
import { poolsMarkdown, runPools } from './pools.bench.js';

const quick = process.argv.includes('--quick');
const doc = new URL('../docs/benchmarks.md', import.meta.url);
const started = Date.now();

const sections: [string, () => Promise<string>][] = [
  ['model-runner', async () => modelRunnerMarkdown(await runModelRunner(quick))],
  ['pools', async () => poolsMarkdown(await runPools(quick))],
];

const machine = `Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC${quick ? ' (--quick: fewer events, noisier)' : ''} · Node ${process.version} · ${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length}`;
let text = readFileSync(doc, 'utf8');
text = replaceSection(text, 'machine', machine);
for (const [name, run] of sections) {
  const t0 = Date.now();
  process.stdout.write(`${name}... `);
  const markdown = await run();
  console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s\n${markdown}\n`);
  text = replaceSection(text, name, markdown);
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

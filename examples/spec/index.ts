// The seed's two-endpoint LLM selector written as a YAML spec (graph.yaml + selectors.mjs) and
// served by the rxserve command: validate it, serve it on a free port, ask one question with
// fetch, then SIGTERM — the server answers what is in flight and exits 0.
// Runs offline against rxserve's loopback OpenAI-compatible server unless OPENAI_API_KEY is set.
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { seedLLM } from '../seed.js';

const bin = fileURLToPath(new URL('../../bin/rxserve.mjs', import.meta.url));
const spec = fileURLToPath(new URL('./graph.yaml', import.meta.url));

// The seed's LLM (the loopback server unless OPENAI_API_KEY is set): ../seed.ts.
const { server: llm } = await seedLLM();
// The spec's model artifact has no provider options: the OpenAI provider reads these.
const env = { ...process.env, ...(llm ? { OPENAI_API_KEY: 'loopback', OPENAI_BASE_URL: llm.openaiBaseURL } : {}) };

console.log(execFileSync(process.execPath, [bin, 'validate', spec], { env, encoding: 'utf8' }).trim());

// --port 0: a free port instead of the spec's 8080; the first stdout line says which.
const child = spawn(process.execPath, [bin, 'serve', spec, '--port', '0'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
const exited = once(child, 'exit');
const lines = createInterface({ input: child.stdout! });
const [first] = (await once(lines, 'line')) as [string];
console.log(first);
const url = first.replace('rxserve listening on ', '');

const response = await fetch(`${url}/advise`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ question: 'How should I start investing 1000 euros?', models: ['finance'] }),
});
const answer = (await response.json()) as { finance?: { output: { answer: string; usage: { total_tokens: number } } } };
console.log(`POST /advise → ${response.status}`, JSON.stringify(answer));

child.kill('SIGTERM');
const [code] = (await exited) as [number | null];
console.log(`rxserve serve exited with code ${code} after SIGTERM`);
await llm?.close();
if (response.status !== 200 || !answer.finance?.output.answer || !(answer.finance.output.usage.total_tokens > 0) || code !== 0) {
  console.error('unexpected results');
  process.exit(1);
}

// The cost of checking what a caller may change (docs/design.md §10): LLModel.predict() over mock:// (no
// network, so the call's own work is what is timed), with and without a caller's invocationConfig
// and messages. With RXSERVE_BASELINE=<path to another build's dist/index.js> (e.g. the commit
// before the check) the same calls run on that build too, interleaved, for a ratio from one run.
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import * as current from 'rxserve';
import { percentile } from './driver.js';

type Rxserve = typeof current;

export interface CallerRow {
  readonly build: string;
  readonly input: string;
  /** Median over the rounds of the mean CPU time per predict() call, ns. */
  readonly nsPerCall: number;
  readonly p90NsPerCall: number;
}

export interface CallerFigures {
  readonly calls: number;
  readonly rounds: number;
  readonly rows: readonly CallerRow[];
  /** The 1-minute load average before and after the run (the machine is shared). */
  readonly load: readonly [number, number];
}

const INPUTS: Record<string, unknown> = {
  'placeholders only': { question: 'Should I buy bonds?' },
  'caller config (4 sampling fields) + 2 messages': {
    question: 'Should I buy bonds?',
    invocationConfig: { temperature: 0.7, top_p: 0.9, max_tokens: 100_000, seed: 7 },
    messages: [
      { role: 'assistant', content: 'Earlier answer.' },
      { role: 'user', content: 'And now?' },
    ],
  },
};

function model(rx: Rxserve) {
  const prompt = rx.llmPromptArtifact({
    key: 'advisor',
    model: rx.modelArtifact({ key: 'mock', modelUrl: 'mock://', defaultConfig: { temperature: 0.2, max_tokens: 120 } }),
    promptTemplate: [
      { role: 'system', content: 'You are a financial advisor.' },
      { role: 'user', content: '{question}' },
    ],
    invocationConfig: { max_tokens: 50 },
  });
  return new rx.LLModel({ name: 'advisor', artifact: prompt });
}

export async function runLLMCallers(quick: boolean): Promise<CallerFigures> {
  const loadBefore = loadavg()[0];
  const calls = quick ? 5_000 : 50_000;
  const rounds = quick ? 5 : 11;
  const builds: [string, Rxserve][] = [['this build', current]];
  const baseline = process.env.RXSERVE_BASELINE;
  if (baseline) builds.push(['baseline', (await import(pathToFileURL(baseline).href)) as Rxserve]);

  const cases = builds.flatMap(([build, rx]) =>
    Object.entries(INPUTS).map(([input, body]) => ({ build, input, body, llm: model(rx), times: [] as number[] })),
  );
  for (const c of cases) await c.llm.load();
  const ctx = { origin: 'advisor', eventId: 'e', signal: new AbortController().signal };
  const once = async (c: (typeof cases)[number], n: number) => {
    for (let i = 0; i < n; i++) await c.llm.predict(c.body, ctx);
  };
  for (const c of cases) await once(c, calls); // warm-up (JIT)
  // Rounds interleave the cases, so a busy moment of the shared machine hits them all alike.
  for (let r = 0; r < rounds; r++) {
    for (const c of cases) {
      // CPU time, not wall time: the calls never wait on I/O, and on a shared machine the wall
      // clock also counts the time other processes had the core.
      const t0 = process.cpuUsage();
      await once(c, calls);
      const cpu = process.cpuUsage(t0);
      c.times.push(((cpu.user + cpu.system) * 1000) / calls);
    }
  }
  for (const c of cases) c.llm.close();
  return {
    calls,
    rounds,
    load: [loadBefore, loadavg()[0]],
    rows: cases.map((c) => {
      const sorted = [...c.times].sort((a, b) => a - b);
      return { build: c.build, input: c.input, nsPerCall: percentile(sorted, 50), p90NsPerCall: percentile(sorted, 90) };
    }),
  };
}

export function llmCallersMarkdown(figures: CallerFigures): string {
  const base = (input: string) => figures.rows.find((r) => r.build === 'baseline' && r.input === input);
  const first = figures.rows[0];
  return [
    `${figures.rounds} rounds of ${figures.calls.toLocaleString('en-US')} sequential \`predict()\` calls per case, interleaved; median (p90) of the rounds' mean CPU time per call. Load average ${figures.load[0].toFixed(1)} before, ${figures.load[1].toFixed(1)} after, on ${cpus().length} cores.`,
    '',
    '| build | input | CPU ns per call | p90 | vs the same input on the baseline | vs this build, placeholders only |',
    '|---|---|---|---|---|---|',
    ...figures.rows.map((r) => {
      const b = base(r.input);
      const vsBase = b && r.build !== 'baseline' ? `${(r.nsPerCall / b.nsPerCall).toFixed(2)}×` : '—';
      const vsPlain = r.build === first.build ? `${(r.nsPerCall / first.nsPerCall).toFixed(2)}×` : '—';
      return `| ${r.build} | ${r.input} | ${Math.round(r.nsPerCall).toLocaleString('en-US')} | ${Math.round(r.p90NsPerCall).toLocaleString('en-US')} | ${vsBase} | ${vsPlain} |`;
    }),
  ].join('\n');
}

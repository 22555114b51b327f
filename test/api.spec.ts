// The published typings as a user's editor reads them: nothing marked @internal ships (tsconfig
// stripInternal), and the reviewed API reports (etc/*.api.md, scripts/api-report.mjs) are checked
// against them. Reads dist/: vitest builds first when src/ is newer (test/support/freshBuild.ts).
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');

/** Every declaration file of the package, ESM and CJS typings both. */
function typings(): { file: string; text: string }[] {
  return readdirSync(dist, { recursive: true, withFileTypes: false })
    .map(String)
    .filter((f) => /\.d\.c?ts$/.test(f))
    .map((file) => ({ file, text: readFileSync(join(dist, file), 'utf8') }));
}

// Members and declarations marked @internal in src/ (a distinctive name each), and what they are.
const INTERNAL_NAMES = [
  'BIND_STEP', // Graph[BIND_STEP]: how steps join a graph
  'MONITORING', // Graph[MONITORING]: what exporters read
  'ATTACH_FLOW', // Graph[ATTACH_FLOW]: flows built on a graph
  'flowsIdle', // Graph.flowsIdle()
  'FlowPaths', // flow()'s error paths for specs
  'flowWithPaths',
  'StepOwner', // FlowStep's constructor
  'laneState', // Lane's fields
  'laneTimer',
  'laneUnit',
  'WIRE_BATCH', // OnnxModel[WIRE_BATCH]: its batch wire form in pool workers
  'WireValue',
  'MonitorObserver', // EndpointRegistry.onEvent
];

describe('the published typings', () => {
  it('were built (npm test builds first)', () => {
    expect(existsSync(join(dist, 'index.d.ts')), 'run `npm run build` first').toBe(true);
    expect(typings().length).toBeGreaterThan(6);
  });

  it('carry no @internal declaration and none of the internal names', () => {
    const found = typings().flatMap(({ file, text }) => [
      ...(text.includes('@internal') ? [`${file}: @internal`] : []),
      ...INTERNAL_NAMES.filter((name) => new RegExp(`\\b${name}\\b`).test(text)).map((name) => `${file}: ${name}`),
    ]);
    expect(found).toEqual([]);
  });

  it('give Graph, Flow and FlowStep no constructor (made by createGraph() and flow() only)', () => {
    const classes = typings()
      .filter(({ file }) => file.endsWith('.d.ts'))
      .flatMap(({ text }) => [...text.matchAll(/^declare class (Graph|Flow|FlowStep)\b[^{]*\{\n([^]*?)^\}/gm)]);
    expect(classes.map((m) => m[1]).sort()).toEqual(['Flow', 'FlowStep', 'Graph']);
    for (const [, name, body] of classes) expect(body, name).not.toMatch(/^\s+constructor\(/m);
  });

  // The names above must stay meaningful: each is still in src/, marked @internal or (for the
  // symbols) the key of a member that is.
  it('name things that exist in src/', () => {
    const src = readdirSync(join(root, 'src'), { recursive: true, withFileTypes: false })
      .map(String)
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts'))
      .map((f) => readFileSync(join(root, 'src', f), 'utf8'))
      .join('\n');
    expect(INTERNAL_NAMES.filter((name) => !new RegExp(`\\b${name}\\b`).test(src))).toEqual([]);
  });
});

describe('the API reports (scripts/api-report.mjs, npm run api:check)', () => {
  const copy = mkdtempSync(join(tmpdir(), 'rxserve-api-reports-'));
  afterAll(() => rmSync(copy, { recursive: true, force: true }));

  it('fail on a report that differs from the typings and on a report of no entry, and pass the others', async () => {
    cpSync(join(root, 'etc'), copy, { recursive: true });
    const reports = readdirSync(copy)
      .filter((f) => f.endsWith('.api.md'))
      .sort();
    // One per public entry of package.json "exports".
    expect(reports).toEqual([
      'rxserve-llm.api.md',
      'rxserve-model.api.md',
      'rxserve-operators.api.md',
      'rxserve-streams.api.md',
      'rxserve-testing.api.md',
      'rxserve.api.md',
    ]);
    // A public function that the typings do not have: the review would have to approve it.
    const doctored = join(copy, 'rxserve-operators.api.md');
    writeFileSync(
      doctored,
      readFileSync(doctored, 'utf8').replace(
        '// @public\nexport function step',
        '// @public\nexport function stepTwice(): void;\n\n// @public\nexport function step',
      ),
    );
    writeFileSync(join(copy, 'rxserve-gone.api.md'), '## API Report File for "rxserve-gone"\n');
    const run = promisify(execFile)(process.execPath, [join(root, 'scripts/api-report.mjs'), '--reports', copy], { cwd: root });
    const failure = (await run.then(
      () => undefined,
      (error: unknown) => error,
    )) as { code: number; stdout: string; stderr: string } | undefined;
    expect(failure, 'the check passed a doctored report').toBeDefined();
    expect(failure!.code).toBe(1);
    const lines = failure!.stderr.split('\n').filter((l) => l.startsWith('api-report: '));
    expect(lines.filter((l) => !l.includes('the public API changed'))).toEqual([
      expect.stringMatching(/rxserve-operators\.api\.md differs from the built typings of '\.\/operators'$/),
      expect.stringMatching(/rxserve-gone\.api\.md belongs to no entry of package\.json "exports": remove it$/),
    ]);
    // The doctored report is left as it was: a check never rewrites the reviewed files.
    expect(readFileSync(doctored, 'utf8')).toContain('stepTwice');
  }, 180_000);
});

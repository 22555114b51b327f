// Every example folder runs, against the built package, and exits 0 (it checks its own results).
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const examples = readdirSync(`${root}/examples`, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(`${root}/examples/${d.name}/index.ts`))
  .map((d) => d.name);

describe('examples', () => {
  it('there are examples to run', () => {
    expect(examples.length).toBeGreaterThan(0);
  });
  it.each(examples)('examples/%s runs and exits 0', async (name) => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', `examples/${name}/index.ts`], {
      cwd: root,
      timeout: 60_000,
      env: { ...process.env, OPENAI_API_KEY: '' },
    });
    expect(stdout.length).toBeGreaterThan(0);
  });
});

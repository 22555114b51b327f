// vitest's global setup: worker threads, child processes, the examples and the CLI run the BUILT
// package (dist/), so a test run after an edit to src/ would test the old code. When any source is
// newer than the build (or there is none), build first; `npm test` has just built, so it skips.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** The newest modification time of the files under `dir` (0 when it does not exist). */
function newest(dir: string, skip?: (name: string) => boolean): number {
  if (!existsSync(dir)) return 0;
  let latest = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const current = stack.pop()!;
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      if (skip?.(entry.name)) continue;
      const path = join(current, entry.name);
      if (entry.isDirectory()) stack.push(path);
      else latest = Math.max(latest, statSync(path).mtimeMs);
    }
  }
  return latest;
}

/** The oldest output of the build that workers load: its entries' mtimes. */
function builtAt(): number {
  const entries = ['dist/index.js', 'dist/execution/threadWorker.js', 'dist/execution/processWorker.js', 'dist/cli/main.js'].map((f) =>
    join(root, f),
  );
  if (!entries.every((f) => existsSync(f))) return 0;
  return Math.min(...entries.map((f) => statSync(f).mtimeMs));
}

export default function setup(): void {
  if (process.env.RXSERVE_SKIP_BUILD_CHECK === '1') return;
  // The build's inputs: the sources, and the configs that decide what it emits (tsconfig.json's
  // stripInternal shapes the typings; package.json's build script and exports).
  const sources = Math.max(
    newest(join(root, 'src'), (name) => name.endsWith('.spec.ts')),
    ...['tsup.config.ts', 'tsconfig.json', 'package.json'].map((f) => statSync(join(root, f)).mtimeMs),
  );
  if (builtAt() >= sources) return;
  process.stdout.write('rxserve: src/ or a build config is newer than dist/ (workers, examples and the CLI load dist/): building first\n');
  const npm = process.env.npm_execpath;
  if (npm !== undefined && npm.endsWith('.js'))
    execFileSync(process.execPath, [npm, 'run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
  else execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
}

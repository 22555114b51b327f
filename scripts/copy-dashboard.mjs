// Copies the dashboard page (src/serve/dashboard/static) and uPlot (MIT, its licence beside it)
// into dist/dashboard/, where the built package serves them from. No build step of their own.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist', 'dashboard');
mkdirSync(out, { recursive: true });
const pages = join(root, 'src', 'serve', 'dashboard', 'static');
for (const name of readdirSync(pages)) copyFileSync(join(pages, name), join(out, name));
const uplot = dirname(createRequire(import.meta.url).resolve('uplot/package.json'));
copyFileSync(join(uplot, 'dist', 'uPlot.esm.js'), join(out, 'uPlot.esm.js'));
copyFileSync(join(uplot, 'dist', 'uPlot.min.css'), join(out, 'uPlot.min.css'));
copyFileSync(join(uplot, 'LICENSE'), join(out, 'uPlot.LICENSE'));

// The built package loads fastify only when serve() is called: importing 'rxserve' stays light.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('fastify is loaded lazily', () => {
  it("require('rxserve') does not load fastify; the first serve() does", () => {
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `
        const loaded = () => Object.keys(require.cache).some((k) => k.includes('/node_modules/fastify/'));
        const rxserve = require('rxserve');
        const before = loaded();
        rxserve.serve(rxserve.step((b) => b), { port: 0 }).then(async (server) => {
          console.log(JSON.stringify({ before, after: loaded() }));
          await server.close();
        });
        `,
      ],
      { cwd: root, encoding: 'utf8' },
    );
    expect(JSON.parse(out)).toEqual({ before: false, after: true });
  });

  it('the ESM build imports fastify only dynamically (in whichever chunk serve() landed)', () => {
    const chunks = readdirSync(`${root}/dist`)
      .filter((f) => f.endsWith('.js'))
      .map((f) => readFileSync(`${root}/dist/${f}`, 'utf8'));
    expect(chunks.some((code) => code.includes('import("fastify")'))).toBe(true);
    for (const code of chunks) expect(code).not.toMatch(/from\s*["']fastify["']/);
  });
});

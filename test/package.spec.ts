// The built package, as a user installs it: every entry resolves through `exports` (ESM and CJS)
// and an error class is the same class whichever entry it comes through.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();

describe('the built package', () => {
  it('was built (npm test runs the build first)', () => {
    expect(existsSync(`${root}/dist/index.js`), 'run `npm run build` before the tests').toBe(true);
  });

  it('ESM: rxserve, rxserve/operators and rxserve/testing load; errors are one class across entries', () => {
    const out = node([
      '--input-type=module',
      '-e',
      `
      import * as root from 'rxserve';
      import * as operators from 'rxserve/operators';
      import * as testing from 'rxserve/testing';
      let fromOperators, fromTesting;
      try { operators.modelRunner({ models: [] }); } catch (e) { fromOperators = e; }
      const ex = testing.testExecutor({});
      try { ex.open([{ endpointName: 'm', modelClass: 'Model', executionMechanism: 'naive' }], { step: 's', fail() {} }); } catch (e) { fromTesting = e; }
      console.log(JSON.stringify({
        sameOperator: root.modelRunner === operators.modelRunner,
        operatorsInstanceOf: fromOperators instanceof root.ConfigError && fromOperators instanceof root.RxServeError,
        testingInstanceOf: fromTesting instanceof root.ConfigError,
        name: fromOperators.name,
        operatorNames: Object.keys(operators).sort(),
      }));
      `,
    ]);
    expect(JSON.parse(out)).toEqual({
      sameOperator: true,
      operatorsInstanceOf: true,
      testingInstanceOf: true,
      name: 'ConfigError',
      operatorNames: ['modelRunner', 'onError', 'router', 'selectModels', 'step'],
    });
  });

  it('CJS: require() of each entry works and errors are one class across entries', () => {
    const out = node([
      '-e',
      `
      const root = require('rxserve');
      const operators = require('rxserve/operators');
      const testing = require('rxserve/testing');
      let e1;
      try { operators.router({ key: () => 'a', routes: {} }); } catch (e) { e1 = e; }
      console.log(JSON.stringify([e1 instanceof root.ConfigError, root.step === operators.step, typeof testing.testExecutor]));
      `,
    ]);
    expect(JSON.parse(out)).toEqual([true, true, 'function']);
  });

  it('rxserve/llm (ESM and CJS): the LLM helpers, which the root no longer exports', () => {
    const esm = node([
      '--input-type=module',
      '-e',
      `
      import * as root from 'rxserve';
      import * as llm from 'rxserve/llm';
      const usage = llm.estimateUsage([{ role: 'user', content: 'Hello there' }], 'General Kenobi');
      console.log(JSON.stringify({
        names: Object.keys(llm).sort(),
        leftInRoot: ['createNodeFetch', 'MOCK_ANSWER', 'buildMessages', 'estimateUsage', 'countTextTokens'].filter((n) => n in root),
        stillInRoot: ['LLModel', 'modelArtifact', 'llmPromptArtifact', 'loadArtifact', 'isPromptArtifact'].filter((n) => typeof root[n] === 'function'),
        totalIsSum: usage.total_tokens === usage.prompt_tokens + usage.completion_tokens && usage.estimated === true,
        tokens: llm.countTextTokens('Hello there'),
        messages: llm.buildMessages({ key: 'p', promptTemplate: [{ role: 'user', content: 'Q: {q}' }] }, { q: 'why?' }, 'e'),
        fetch: typeof llm.createNodeFetch(),
      }));
      `,
    ]);
    expect(JSON.parse(esm)).toEqual({
      names: ['buildMessages', 'countTextTokens', 'createNodeFetch', 'estimateUsage'],
      leftInRoot: [],
      stillInRoot: ['LLModel', 'modelArtifact', 'llmPromptArtifact', 'loadArtifact', 'isPromptArtifact'],
      totalIsSum: true,
      tokens: 2,
      messages: [{ role: 'user', content: 'Q: why?' }],
      fetch: 'function',
    });
    const cjs = node(['-e', `const llm = require('rxserve/llm'); console.log(JSON.stringify(Object.keys(llm).sort()));`]);
    expect(JSON.parse(cjs)).toEqual(['buildMessages', 'countTextTokens', 'createNodeFetch', 'estimateUsage']);
  });

  it('ships type declarations for every entry, and the operators/ proxy points at real files', () => {
    const pkg = JSON.parse(readFileSync(`${root}/package.json`, 'utf8'));
    for (const entry of ['.', './operators', './testing', './llm']) {
      for (const condition of ['import', 'require']) {
        const target = pkg.exports[entry][condition];
        expect(existsSync(`${root}/${target.types}`), `${entry} ${condition} types`).toBe(true);
        expect(existsSync(`${root}/${target.default}`), `${entry} ${condition} code`).toBe(true);
      }
    }
    for (const proxy of ['operators', 'testing', 'llm']) {
      expect(pkg.files, `${proxy} in package.json files`).toContain(proxy);
      const p = JSON.parse(readFileSync(`${root}/${proxy}/package.json`, 'utf8'));
      for (const field of ['types', 'main', 'module']) expect(existsSync(`${root}/${proxy}/${p[field]}`), `${proxy} ${field}`).toBe(true);
    }
    expect(pkg.peerDependencies.rxjs).toBe('>=7.8 <8');
  });
});

// The reviewed public API: one API Extractor report per public entry, committed under etc/.
//   node scripts/api-report.mjs           check (npm run api:check, in npm test): fails when a report
//                                         differs from the built typings
//   node scripts/api-report.mjs --update  writes the reports (npm run api), to commit with the change
//   --reports <dir>                       another folder than etc/ (test/api.spec.ts checks a doctored copy)
//
// It reads the built typings (dist/**/index.d.ts), so build first (`npm run build`). The entries are
// package.json "exports": '.' reports as etc/rxserve.api.md, './operators' as
// etc/rxserve-operators.api.md, and so on; a new subpath gets its report the first time `npm run api`
// runs, and the check fails until it is committed. A report is the surface a user can reach: what an
// entry exports, and (flagged `ae-forgotten-export`) the types its exports name that no entry exports.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { Extractor, ExtractorConfig } = require('@microsoft/api-extractor');

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const update = process.argv.includes('--update');
const at = process.argv.indexOf('--reports');
const reports = at >= 0 ? resolve(process.argv[at + 1]) : join(root, 'etc');

/** Each public entry of package.json "exports": its subpath, its ESM typings and its report's name. */
export function entries() {
  return Object.entries(pkg.exports)
    .filter(([, target]) => typeof target === 'object' && target.import?.types !== undefined)
    .map(([subpath, target]) => ({
      subpath,
      types: join(root, target.import.types),
      report: subpath === '.' ? pkg.name : `${pkg.name}-${subpath.slice(2).replaceAll('/', '-')}`,
    }));
}

function configFor({ types, report }, tempFolder) {
  return ExtractorConfig.prepare({
    configObjectFullPath: join(root, 'api-extractor.json'), // not a file: the folder relative paths start from
    packageJsonFullPath: join(root, 'package.json'),
    configObject: {
      projectFolder: root,
      mainEntryPointFilePath: types,
      newlineKind: 'lf',
      compiler: {
        skipLibCheck: true,
        overrideTsconfig: {
          compilerOptions: {
            target: 'ES2022',
            lib: ['ES2023'],
            module: 'ESNext',
            moduleResolution: 'Bundler',
            types: ['node'],
            strict: true,
            skipLibCheck: true,
            // piscina's typings import its package.json, which API Extractor refuses to analyze
            // (ae-wrong-input-file-type); nothing public comes from it.
            resolveJsonModule: false,
          },
          files: [types],
        },
      },
      apiReport: { enabled: true, reportFileName: report, reportFolder: reports, reportTempFolder: tempFolder },
      docModel: { enabled: false },
      dtsRollup: { enabled: false },
      tsdocMetadata: { enabled: false },
      messages: {
        compilerMessageReporting: { default: { logLevel: 'warning' } },
        extractorMessageReporting: {
          default: { logLevel: 'warning' },
          // No release tags (@public, @beta): what an entry exports is public, and nothing else ships
          // (@internal declarations are stripped from the typings: tsconfig stripInternal).
          'ae-missing-release-tag': { logLevel: 'none' },
          'ae-undocumented': { logLevel: 'none' },
          // Named by an export but exported by no entry: written into the report, for the review.
          'ae-forgotten-export': { logLevel: 'none', addToApiReportFile: true },
        },
        // The doc comments are JSDoc read by editors, not TSDoc: its syntax is not checked here.
        tsdocMessageReporting: { default: { logLevel: 'none' } },
      },
    },
  });
}

/** API Extractor's console lines this script says in its own words (or that say nothing: the TypeScript version it bundles). */
const QUIET = new Set(['console-preamble', 'console-api-report-not-copied', 'console-api-report-copied', 'console-api-report-created']);

function main() {
  const list = entries();
  const missing = list.filter((e) => !existsSync(e.types));
  if (missing.length > 0) {
    console.error(`api-report: no built typings at ${missing.map((e) => relative(root, e.types)).join(', ')}: run \`npm run build\` first`);
    return 1;
  }
  const temp = mkdtempSync(join(tmpdir(), 'rxserve-api-'));
  const failed = [];
  try {
    for (const entry of list) {
      const file = join(relative(root, reports) || '.', `${entry.report}.api.md`);
      const existed = existsSync(join(reports, `${entry.report}.api.md`));
      const result = Extractor.invoke(configFor(entry, temp), {
        localBuild: update,
        // A failed check prints the difference (CI logs show what changed).
        printApiReportDiff: !update,
        messageCallback: (message) => {
          // What API Extractor says about the report files, this script says below, with the fix.
          if (QUIET.has(message.messageId)) message.handled = true;
        },
      });
      if (update) {
        console.log(
          `api-report: ${file} ${!existed ? 'created' : result.apiReportChanged ? 'updated' : 'unchanged'} (${entry.subpath === '.' ? pkg.name : `${pkg.name}${entry.subpath.slice(1)}`})`,
        );
      } else if (!existed) {
        failed.push(`${file} is missing (the report of '${entry.subpath}'): run \`npm run api\` and commit it`);
      } else if (result.apiReportChanged) {
        failed.push(`${file} differs from the built typings of '${entry.subpath}'`);
      }
      if (!result.succeeded && !result.apiReportChanged)
        failed.push(`${file}: ${result.errorCount} error(s), ${result.warningCount} warning(s) (above)`);
    }
    // A report whose entry is gone (a subpath removed from "exports") fails the check too.
    const known = new Set(list.map((e) => `${e.report}.api.md`));
    for (const file of (existsSync(reports) ? readdirSync(reports) : []).filter((f) => f.endsWith('.api.md') && !known.has(f))) {
      failed.push(`${join(relative(root, reports) || '.', file)} belongs to no entry of package.json "exports": remove it`);
    }
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
  for (const line of failed) console.error(`api-report: ${line}`);
  if (failed.length > 0 && !update) {
    console.error(
      'api-report: the public API changed. Review the difference (git diff etc/ after `npm run api`), then commit etc/ with the change.',
    );
  }
  if (failed.length === 0 && !update) console.log(`api-report: ${list.length} report(s) match the built typings`);
  return failed.length > 0 ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = main();

// Post-build: makes every source map in dist/ point only at what the package ships.
//
// esbuild embeds `sourcesContent` for the `src/` files, so the ESM maps are complete. tsup's CJS
// code splitting then rewrites each CJS chunk with sucrase and merges the maps; the lines sucrase
// adds (and esbuild's helpers) end up mapped to the intermediate chunk under its absolute build
// path (`/home/you/rxserve/dist/index.cjs`), with no content: a file that exists on no user's
// machine. This drops those mappings (the generated code is then simply unmapped), removes the
// source, and makes `file` relative. Checked by test/package.spec.ts.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = new Map([...B64].map((c, i) => [c, i]));

/** Base64 VLQ values of one segment. */
function decodeSegment(text) {
  const values = [];
  let value = 0;
  let shift = 0;
  for (const char of text) {
    const digit = B64_INDEX.get(char);
    if (digit === undefined) throw new Error(`invalid base64 VLQ character '${char}'`);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      values.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return values;
}

function encodeValue(n) {
  let vlq = n < 0 ? (-n << 1) | 1 : n << 1;
  let out = '';
  do {
    let digit = vlq & 31;
    vlq >>>= 5;
    if (vlq > 0) digit |= 32;
    out += B64[digit];
  } while (vlq > 0);
  return out;
}

/** Decodes `mappings` to absolute segments: [column] or [column, source, line, col(, name)]. */
function decodeMappings(mappings) {
  const state = [0, 0, 0, 0]; // source, original line, original column, name (file-wide deltas)
  return mappings.split(';').map((line) => {
    let column = 0;
    if (line === '') return [];
    return line.split(',').map((segment) => {
      const v = decodeSegment(segment);
      column += v[0];
      if (v.length === 1) return [column];
      state[0] += v[1];
      state[1] += v[2];
      state[2] += v[3];
      if (v.length === 5) {
        state[3] += v[4];
        return [column, state[0], state[1], state[2], state[3]];
      }
      return [column, state[0], state[1], state[2]];
    });
  });
}

function encodeMappings(lines) {
  const state = [0, 0, 0, 0];
  return lines
    .map((segments) => {
      let column = 0;
      return segments
        .map((s) => {
          let out = encodeValue(s[0] - column);
          column = s[0];
          for (let i = 1; i < s.length; i++) {
            out += encodeValue(s[i] - state[i - 1]);
            state[i - 1] = s[i];
          }
          return out;
        })
        .join(',');
    })
    .join(';');
}

/** Rewrites one map; returns whether it changed. */
export function fixSourceMap(map) {
  const bad = new Set();
  map.sources.forEach((source, i) => {
    if (isAbsolute(source) && typeof map.sourcesContent?.[i] !== 'string') bad.add(i);
  });
  let changed = false;
  if (typeof map.file === 'string' && isAbsolute(map.file)) {
    map.file = basename(map.file);
    changed = true;
  }
  if (bad.size === 0) return changed;
  const newIndex = [];
  let next = 0;
  map.sources.forEach((_, i) => (newIndex[i] = bad.has(i) ? -1 : next++));
  const lines = decodeMappings(map.mappings).map((segments) =>
    segments.map((s) => {
      if (s.length === 1) return s;
      if (bad.has(s[1])) return [s[0]];
      const copy = [...s];
      copy[1] = newIndex[s[1]];
      return copy;
    }),
  );
  // Adjacent unmapped segments say nothing new: keep the first of each run.
  for (const segments of lines) {
    for (let i = segments.length - 1; i > 0; i--) if (segments[i].length === 1 && segments[i - 1].length === 1) segments.splice(i, 1);
  }
  map.mappings = encodeMappings(lines);
  map.sources = map.sources.filter((_, i) => !bad.has(i));
  if (Array.isArray(map.sourcesContent)) map.sourcesContent = map.sourcesContent.filter((_, i) => !bad.has(i));
  else map.sourcesContent = map.sources.map(() => null);
  return true;
}

function mapsUnder(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? mapsUnder(join(dir, e.name)) : e.name.endsWith('.map') ? [join(dir, e.name)] : [],
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dist = process.argv[2] ?? fileURLToPath(new URL('../dist', import.meta.url));
  let fixed = 0;
  for (const file of mapsUnder(dist)) {
    const map = JSON.parse(readFileSync(file, 'utf8'));
    if (fixSourceMap(map)) {
      writeFileSync(file, JSON.stringify(map));
      fixed++;
    }
  }
  console.log(`fix-sourcemaps: ${fixed} map(s) in ${dist} no longer name build-machine paths`);
}

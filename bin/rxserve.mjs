#!/usr/bin/env node
// The `rxserve` command: see docs/spec.md. The work is in dist/cli/main.js (built from src/cli/main.ts).
import { main } from '../dist/cli/main.js';

// exit() rather than waiting for the loop to drain: keep-alive agents of LLM clients would hold it.
process.exit(await main(process.argv.slice(2)));

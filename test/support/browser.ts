// A real Chromium for browser tests: Debian's (apt-get install chromium), driven by playwright-core
// (which never downloads a browser). Absent → the suite skips with one visible line, unless
// RXSERVE_REQUIRE_BROWSER=1 (CI), where it fails.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext } from 'playwright-core';

export const CHROMIUM = process.env.RXSERVE_CHROMIUM ?? '/usr/bin/chromium';

/** Whether a suite needing a browser should run; warns once (or throws under RXSERVE_REQUIRE_BROWSER=1) when it cannot. */
export function browserAvailable(suite: string): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.RXSERVE_REQUIRE_BROWSER === '1') {
    throw new Error(`${suite}: no Chromium at ${CHROMIUM} and RXSERVE_REQUIRE_BROWSER=1 (install it: apt-get install -y chromium)`);
  }
  console.warn(`${suite}: no Chromium at ${CHROMIUM}, skipping (install it: apt-get install -y chromium)`);
  return false;
}

/** A headless Chromium with a fresh profile; `close()` ends it and removes the profile. */
export async function launchBrowser(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'rxserve-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    viewport: { width: 1400, height: 1000 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

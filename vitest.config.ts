import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.spec.ts', 'test/**/*.spec.ts'],
    // Builds first when src/ is newer than dist/ (workers and examples load the built package).
    globalSetup: ['test/support/freshBuild.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});

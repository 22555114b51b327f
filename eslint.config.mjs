// ESLint flat config, run by `npm test` (`npm run lint`). Today it enforces the type-checked rules
// that catch real bugs in async code (a promise nobody awaits or catches, a promise where a value
// is expected) and consistent type imports. The next step is typescript-eslint's
// recommendedTypeChecked as the floor (STYLE.md): `npx eslint --rule ...` or swapping the rules
// below for `...tseslint.configs.recommendedTypeChecked` lists what is left to fix (issue 27).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.bench-tmp/**', '.scratch/**', 'src/serve/dashboard/static/**'] },
  {
    files: ['src/**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // import('ioredis').Redis-style annotations stay allowed: they name an optional peer's types where they are used.
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false }],
    },
  },
);

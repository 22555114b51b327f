// ESLint flat config, run by `npm test` (`npm run lint`). src/ has typescript-eslint's
// recommendedTypeChecked as its floor (STYLE.md), with the options below; each says why.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.bench-tmp/**', '.scratch/**', 'src/serve/dashboard/static/**'] },
  {
    files: ['src/**/*.ts'],
    extends: [...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // import('ioredis').Redis-style annotations stay allowed: they name an optional peer's types where they are used.
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false }],
      // `_name` marks a parameter kept for its position, or a key dropped from a rest copy (`{ error: _error, ...rest }`).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
      // A subscription read by its own callbacks is a `let` assigned by subscribe(): a `const` would be in its TDZ when the source emits synchronously.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Promise.all over hooks typed `void | Promise<void>` (load, close, ready) is how the code waits for whichever are async.
      '@typescript-eslint/await-thenable': ['error', { allowMixedPromiseArrays: true }],
      // A rejection passes on the reason it was given (an abort signal's reason, a caught value) unchanged, as AbortSignal does.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingAny: true, allowThrowingUnknown: true }],
    },
  },
  {
    // test/ and bench/: the promise rules (a floating promise in a test hides its failure).
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
);

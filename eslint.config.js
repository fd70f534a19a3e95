// Lint: typescript-eslint's recommended rules on top of ESLint's, over sources, tests, benchmarks and the web UI
// (plus the rules of hooks for the UI's React code); and the layering of src/ (docs/architecture.md, "Repository
// layout"): layers point down. Nothing below the controllers imports them or the CLI, and the controllers never
// import the API server. Tests may cross layers. In the product's code (not tests), a promise is awaited, returned,
// or explicitly let go with `void`: a forgotten one is an unhandled rejection waiting to crash a component.
import js from '@eslint/js';
import reactHooks from 'eslint-plugin-react-hooks';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/controllers/**', 'src/cli/**', 'src/manager/**', '**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{
          group: ['**/controllers/**', '**/cli/**', '**/manager/**'],
          message: 'layers point down: move what both sides need into src/api (contracts) or src/util',
        }],
      }],
    },
  },
  {
    files: ['src/util/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['../*'], message: 'src/util is the bottom layer: it imports nothing of Stratum outside itself' }],
      }],
    },
  },
  {
    files: ['src/controllers/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{
          group: ['**/apiserver/**', '**/cli/**', '**/manager/**'],
          message: 'controllers never import the API server or the CLI: move what both need into src/api or src/util',
        }],
      }],
    },
  },
  {
    files: ['src/**/*.ts', 'bench/**/*.ts'],
    ignores: ['**/*.test.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
    },
  },
  {
    files: ['ui/**/*.{ts,tsx}'],
    ...reactHooks.configs.flat['recommended-latest'],
  },
);

// ESLint flat config: `npm run lint`. ESLint's and typescript-eslint's recommended rules, and a few more.
const { defineConfig, globalIgnores } = require('eslint/config');
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');
const globals = require('globals');
const { importX } = require('eslint-plugin-import-x');
const { createTypeScriptImportResolver } = require('eslint-import-resolver-typescript');

/** Folders of lib/ that hold features (built on the core); see docs/ARCHITECTURE.md. */
const FEATURE_FOLDERS = ['store', 'resume', 'feed', 'channel', 'client'];

module.exports = defineConfig([
  globalIgnores(['dist/', 'docs/', 'coverage/', 'test-output/', 'bench/profiles/']),
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false }],
      // `declare global { namespace Express { ... } }` is how Express's Response gets `sse`.
      '@typescript-eslint/no-namespace': ['error', { allowDeclarations: true }],
    },
  },
  {
    files: ['lib/**/*.ts'],
    rules: {
      // dist/esm is Node ESM: every relative import needs its `.js` extension.
      'no-restricted-syntax': [
        'error',
        {
          selector: ':matches(ImportDeclaration, ExportNamedDeclaration, ExportAllDeclaration)[source.value=/^\\.\\.?\\/(?!.*\\.js$)/]',
          message: "Relative imports in lib/ end with '.js' (e.g. './stream.js'): dist/esm is loaded by Node as ESM.",
        },
      ],
      'no-console': 'error',
      // The layout of docs/ARCHITECTURE.md: dependencies point one way, so no module of lib/ reaches itself again.
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: 'tsconfig.json' })],
    },
  },
  {
    // Core modules (the files directly in lib/) know nothing of features; the middleware composes them and the
    // entry point re-exports them.
    files: ['lib/*.ts'],
    ignores: ['lib/index.ts', 'lib/middleware.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: `^\\./(${FEATURE_FOLDERS.join('|')})/`,
              message: 'A core module must not import a feature folder (docs/ARCHITECTURE.md): pass what it needs through an interface of the core.',
            },
          ],
        },
      ],
    },
  },
  {
    // Node scripts: the demo server and the config files are CommonJS, the benchmarks ES modules.
    files: ['**/*.js', '**/*.cjs'],
    ignores: ['demo-app/public/**'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: globals.node },
  },
  {
    // The demo page's script, loaded by a <script> tag.
    files: ['demo-app/public/**/*.js'],
    languageOptions: { sourceType: 'script', globals: globals.browser },
  },
]);

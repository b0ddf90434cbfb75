// ESLint flat config: `npm run lint`. ESLint's and typescript-eslint's recommended rules, and a few more.
const { defineConfig, globalIgnores } = require('eslint/config');
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');
const globals = require('globals');

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

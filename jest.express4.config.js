/**
 * The wire tests again, against Express 4: every `require('express')` (the tests', the demo app's) loads the
 * `express4` devDependency, an npm alias of express@4. Run with `npm run test:express4` (CI runs it after `npm test`).
 *
 * Left out, by file name, because they need Express 5 itself rather than anything in the library:
 * - error-handler.test.ts: most of its routes are `async` and reject; only Express 5 routes a rejected promise to
 *   error middleware (Express 4 leaves it unhandled; there, catch and call `next(err)`, as the README says);
 * - demo-app.test.ts: the demo is an Express 5 app (its async route relies on the same);
 * - package.test.ts: installs the packed tarball with the current express; nothing in it depends on the version.
 * @type {import('jest').Config}
 */
const base = require('./jest.config');

const EXPRESS_5_ONLY = ['error-handler', 'demo-app', 'package'];

module.exports = {
  ...base,
  testPathIgnorePatterns: [
    ...base.testPathIgnorePatterns,
    ...EXPRESS_5_ONLY.map((name) => `<rootDir>/__tests__/${name}\\.test\\.ts$`),
  ],
  moduleNameMapper: { ...base.moduleNameMapper, '^express$': 'express4' },
};

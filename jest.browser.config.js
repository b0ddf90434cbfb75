/**
 * Browser tests: the demo app in Debian's Chromium (/usr/bin/chromium), driven by playwright-core.
 * Run with `npm run test:browser` (builds first); plain `npm test` leaves them out and needs nothing but Node.
 * @type {import('jest').Config}
 */
const base = require('./jest.config');

module.exports = {
  ...base,
  roots: ['<rootDir>/__tests__/browser'],
  testPathIgnorePatterns: ['/node_modules/'],
  testTimeout: 60000,
};

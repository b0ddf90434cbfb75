/**
 * Integration tests: everything that needs a real peer installed with apt — Chromium (`__tests__/browser/`), nginx
 * and redis-server (`__tests__/integration/`) — and the real SSE clients (`__tests__/integration/clients/`: npm dev
 * dependencies, and Python's httpx-sse in a virtualenv the test creates). Run with `npm run test:integration`; a
 * missing binary fails the test with the exact install line.
 * @type {import('jest').Config}
 */
const browser = require('./jest.browser.config');

module.exports = {
  ...browser,
  roots: ['<rootDir>/__tests__'],
  testMatch: ['<rootDir>/__tests__/{browser,integration}/**/*.test.ts'],
};

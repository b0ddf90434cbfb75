/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/__tests__'],
  testMatch: ['**/*.test.ts'],
  // Browser tests need Chromium: they run with `npm run test:browser` (jest.browser.config.js), not `npm test`.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/__tests__/browser/'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  testTimeout: 20000,
};

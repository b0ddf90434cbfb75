/**
 * The AI SDK scenarios of __tests__/sdk/ai-sdk.test.ts, with the example chat server keeping its answers in a
 * RedisStore on a redis-server of the test's own: send, resume after a drop, 204, a chat's second message, stop.
 * Needs redis-server (`apt-get update && apt-get install -y redis-server`).
 */
import { checkScenarios, runScenarios } from '../helpers/ai-sdk';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';

let redis: RedisServer;

beforeAll(async () => {
  redis = await startRedisServer();
});

afterAll(() => redis?.stop());

test('the AI SDK reads the example chat server with answers kept in Redis', async () => {
  const result = await runScenarios(redis.port);
  expect(result.store).toBe('redis');
  checkScenarios(result);
});

/**
 * Broadcast channels across processes: three instances of __tests__/fixtures/channel-server.js on one real
 * redis-server. A push on A reaches the subscribers on B and C; subscriptions leave no Redis subscription behind.
 *
 * Needs redis-server (`apt-get update && apt-get install -y redis-server`) and a build (`npm run test:integration`
 * builds first).
 */
import path from 'node:path';
import type Redis from 'ioredis';
import { startFixture, stopFixture, type FixtureServer } from '../helpers/fixture-server';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { eventually, openStream, type StreamClient } from '../helpers/sse-client';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'channel-server.js');
/** The pub/sub channel RedisStore wakes the followers of the "news" channel on (default prefix `sse:`). */
const WAKE = 'sse:{channel:news}:wake';

type Instance = FixtureServer;

const startInstance = (redisPort: number): Promise<Instance> => startFixture(FIXTURE, { REDIS_PORT: String(redisPort) });

async function subscribers(instance: Instance): Promise<number> {
  return ((await (await fetch(`${instance.url}/count`)).json()) as { subscribers: number }).subscribers;
}

async function push(instance: Instance, from: number, to: number): Promise<void> {
  const response = await fetch(`${instance.url}/push?from=${from}&to=${to}`, { method: 'POST' });
  if (response.status !== 204) throw new Error(`push: ${response.status}`);
}

async function subscribe(instance: Instance, count: number): Promise<StreamClient[]> {
  const before = await subscribers(instance);
  const clients = await Promise.all(Array.from({ length: count }, () => openStream(`${instance.url}/feed`)));
  await eventually(async () => (await subscribers(instance)) === before + count, 10_000, 'the subscriptions');
  return clients;
}

const numbers = (from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => `{"n":${from + i}}`);

describe('broadcast channels on Redis, across three server processes', () => {
  let redis: RedisServer;
  let client: Redis;
  const instances: Instance[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
    client = redis.connect();
    instances.push(...(await Promise.all([0, 1, 2].map(() => startInstance(redis.port)))));
  });
  afterAll(async () => {
    await Promise.all(instances.map(stopFixture));
    client?.disconnect();
    await redis?.stop();
  });

  const numsub = async (): Promise<number> => Number(((await client.pubsub('NUMSUB', WAKE)) as [string, number])[1]);

  test('a push on A reaches the subscribers on A, B and C, all with the same sequence', async () => {
    const [a, b, c] = instances as [Instance, Instance, Instance];
    const clients = (await Promise.all([subscribe(a, 5), subscribe(b, 5), subscribe(c, 5)])).flat();
    // One pub/sub subscription per instance with subscribers, however many subscribers it has (each instance
    // subscribes once its first subscriber's feed starts: a round trip after the subscriber is counted).
    await eventually(async () => (await numsub()) >= 3, 10_000, 'the instances to subscribe');
    expect(await numsub()).toBe(3);
    // Each push request is answered once its events are in Redis (channel.send()), so B's land after A's.
    await push(a, 1, 10);
    await push(b, 11, 15);
    await Promise.all(clients.map((stream) => stream.waitForCount(15)));
    const sequences = clients.map((stream) => stream.events.map((event) => event.data));
    // Pushes from one instance keep their order, and every subscriber, on any instance, sees one sequence.
    for (const sequence of sequences) expect(sequence).toEqual([...numbers(1, 10), ...numbers(11, 15)]);
    expect(new Set(clients.map((stream) => stream.events.map((event) => event.id).join(','))).size).toBe(1);
    for (const stream of clients) stream.abort();
    await eventually(async () => (await Promise.all(instances.map(subscribers))).every((count) => count === 0), 10_000, 'every subscription to end');
    await eventually(async () => (await numsub()) === 0, 10_000, 'the pub/sub subscriptions to go');
  });

  test('a subscriber that comes back to another instance with Last-Event-ID gets what it missed', async () => {
    const [a, b, c] = instances as [Instance, Instance, Instance];
    const [first] = await subscribe(a, 1);
    await push(c, 100, 102);
    await first!.waitForCount(3);
    const lastId = first!.events[1]!.id!;
    first!.abort();
    await push(c, 103, 104);
    const back = await openStream(`${b.url}/feed`, { headers: { 'Last-Event-ID': lastId } });
    await back.waitForCount(3);
    expect(back.events.map((event) => event.data)).toEqual(numbers(102, 104));
    back.abort();
    await eventually(async () => (await Promise.all(instances.map(subscribers))).every((count) => count === 0), 10_000, 'every subscription to end');
  });

  test('1,000 subscribe/disconnect cycles on B leave no subscriber and no Redis subscription behind', async () => {
    const b = instances[1]!;
    for (let round = 0; round < 10; round += 1) {
      const batch = await subscribe(b, 100);
      await push(instances[0]!, round, round);
      await Promise.all(batch.map((stream) => stream.waitForCount(1)));
      for (const stream of batch) stream.abort();
      await eventually(async () => (await subscribers(b)) === 0, 10_000, 'the batch to unsubscribe');
    }
    await eventually(async () => (await numsub()) === 0, 10_000, 'the pub/sub subscription to go');
    expect(await subscribers(b)).toBe(0);
    expect(await numsub()).toBe(0);
  }, 60_000);
});

/**
 * Resumable streams across processes: two instances of __tests__/fixtures/resume-server.js (the built package, as
 * `express-sse-context` and `express-sse-context/redis`) on one real redis-server. The run is produced on A; clients
 * follow it on B, reconnect there, and outlive A when it is killed.
 *
 * Needs redis-server (`apt-get update && apt-get install -y redis-server`) and a build (`npm run test:integration`
 * builds first).
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { startFixture, stopFixture, type FixtureServer } from '../helpers/fixture-server';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { openStream, type StreamClient } from '../helpers/sse-client';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'resume-server.js');
const LEASE = 1000;

type Instance = FixtureServer;

const startInstance = (redisPort: number): Promise<Instance> =>
  startFixture(FIXTURE, { REDIS_PORT: String(redisPort), LEASE: String(LEASE) });
const stopInstance = stopFixture;

async function control(instance: Instance, key: string, action: string): Promise<void> {
  const response = await fetch(`${instance.url}/control/${key}/${action}`, { method: 'POST' });
  if (response.status !== 204) throw new Error(`POST ${action} on ${key}: ${response.status}`);
}

const push = (instance: Instance, key: string, from: number, to: number): Promise<void> =>
  control(instance, key, `push?from=${from}&to=${to}`);

const follow = (instance: Instance, key: string, lastEventId?: string): Promise<StreamClient> =>
  openStream(`${instance.url}/runs/${key}`, { headers: lastEventId === undefined ? {} : { 'Last-Event-ID': lastEventId } });

const datas = (client: StreamClient): string[] => client.events.map((event) => event.data);
const numbers = (from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => `{"n":${from + i}}`);

describe('resumable streams on Redis, across two server processes', () => {
  let redis: RedisServer;
  let a: Instance | undefined;
  let b: Instance | undefined;

  beforeAll(async () => {
    redis = await startRedisServer();
    [a, b] = await Promise.all([startInstance(redis.port), startInstance(redis.port)]);
  });
  afterAll(async () => {
    await Promise.all([stopInstance(a), stopInstance(b)]);
    await redis?.stop();
  });

  test('a client that drops on A and comes back to B with Last-Event-ID gets exactly the missing events, then the live ones', async () => {
    const key = `drop-${randomUUID()}`;
    const first = await follow(a!, key);
    await push(a!, key, 1, 5);
    await first.waitForCount(5);
    first.abort();
    await first.ended;
    // The run goes on with no client at all.
    await push(a!, key, 6, 8);

    const lastId = first.events.at(-1)!.id!;
    expect(lastId).toMatch(/^[0-9a-z]{12}\.5$/);
    const second = await follow(b!, key, lastId);
    await second.waitForCount(3);
    await push(a!, key, 9, 12);
    await control(a!, key, 'close');
    await second.ended;

    expect(datas(first)).toEqual(numbers(1, 5));
    expect(datas(second)).toEqual([...numbers(6, 12), '[DONE]']);
    const ids = [...first.events, ...second.events].flatMap((event) => (event.id === undefined ? [] : [event.id]));
    const runId = lastId.split('.')[0]!;
    expect(ids).toEqual(Array.from({ length: 12 }, (_, i) => `${runId}.${i + 1}`));
  });

  test('a producer killed with SIGKILL: its followers on B get a {type:"error"} event within about the lease', async () => {
    const key = `kill-${randomUUID()}`;
    const producer = await follow(a!, key);
    await push(a!, key, 1, 3);
    const followers = await Promise.all(Array.from({ length: 3 }, () => follow(b!, key)));
    await Promise.all(followers.map((client) => client.waitForCount(3)));

    const killed = Date.now();
    a!.child.kill('SIGKILL');
    await a!.exited;
    const seen = await Promise.all(
      followers.map(async (client) => {
        await client.waitForEvent((event) => event.data.includes('"type":"error"'), 10 * LEASE);
        return Date.now() - killed;
      }),
    );
    await Promise.all(followers.map((client) => client.ended));
    console.log(`lease ${LEASE} ms: followers on B saw the error ${seen.join(', ')} ms after SIGKILL of the producer`);

    for (const client of followers) {
      const [error, done] = datas(client).slice(3);
      expect(datas(client).slice(0, 3)).toEqual(numbers(1, 3));
      expect(JSON.parse(error!)).toMatchObject({ type: 'error' });
      expect(done).toBe('[DONE]');
      expect(datas(client)).toHaveLength(5);
    }
    await producer.ended;
    // A late client on B reads the same durable end.
    const late = await follow(b!, key);
    await late.ended;
    expect(datas(late)).toEqual(datas(followers[0]!));
    a = await startInstance(redis.port);
  });

  test('100 followers of one key, on both instances and joining at different times, receive identical sequences', async () => {
    const key = `fanout-${randomUUID()}`;
    const producer = await follow(a!, key);
    await push(a!, key, 1, 10);
    const early = await Promise.all(Array.from({ length: 50 }, (_, i) => follow(i % 2 === 0 ? b! : a!, key)));
    await push(a!, key, 11, 30);
    const late = await Promise.all(Array.from({ length: 49 }, (_, i) => follow(i % 3 === 0 ? a! : b!, key)));
    await push(a!, key, 31, 50);
    await control(a!, key, 'close');
    const all = [producer, ...early, ...late];
    await Promise.all(all.map((client) => client.ended));
    const expected = [...numbers(1, 50), '[DONE]'];
    for (const client of all) expect(datas(client)).toEqual(expected);
    expect(new Set(all.map((client) => client.events.map((event) => event.id).join(','))).size).toBe(1);
  });
});

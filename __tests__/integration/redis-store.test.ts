/**
 * RedisStore against a real redis-server (Debian's /usr/bin/redis-server, started by this test on a free port):
 * the ResumeStore contract over RESP3 (ioredis's default) and over RESP2 with `stringNumbers`, then what only Redis
 * has — a lease that lapses, approximate stream trimming, the subscriber connection, scripts flushed from the server.
 *
 * Needs redis-server: `apt-get update && apt-get install -y redis-server`. Run with `npm run test:integration`.
 */
import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { RedisStore } from '../../lib/store/redis';
import { type RunSettings } from '../../lib/store/contract';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { delay, eventually } from '../helpers/sse-client';
import { describeResumeStore } from '../helpers/store-contract';

let server: RedisServer;

beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});

describeResumeStore('RedisStore (RESP3)', async () => {
  const client = server.connect();
  const store = new RedisStore({ client });
  return {
    store,
    teardown: async () => {
      await store.close();
      await client.quit();
    },
  };
});

describeResumeStore('RedisStore (RESP2, stringNumbers, own prefix)', async () => {
  const client = server.connect();
  const resp2 = client.duplicate({ protocol: 2, stringNumbers: true });
  await client.quit();
  const store = new RedisStore({ client: resp2, prefix: 'contract:' });
  return {
    store,
    teardown: async () => {
      await store.close();
      await resp2.quit();
    },
  };
});

const LONG: RunSettings = { ttl: 60_000, lease: 60_000, maxEvents: 1000 };
const freshKey = (label: string): string => `${label}-${randomUUID()}`;
const body = (text: string): string => `data: ${text}\n\n`;

describe('RedisStore on Redis', () => {
  let client: Redis;
  let store: RedisStore;

  beforeEach(() => {
    client = server.connect();
    store = new RedisStore({ client });
  });
  afterEach(async () => {
    await store.close();
    if (client.status !== 'end') await client.quit();
  });

  async function numsub(key: string, prefix = 'sse:'): Promise<number> {
    const reply = (await client.call('PUBSUB', 'NUMSUB', `${prefix}{${key}}:wake`)) as [string, number];
    return Number(reply[1]);
  }

  async function connections(): Promise<number> {
    return String(await client.client('LIST')).trim().split('\n').length;
  }

  async function endEntries(key: string): Promise<string[]> {
    const entries = (await client.xrange(`sse:{${key}}:events`, '-', '+')) as [string, string[]][];
    return entries.filter(([, fields]) => fields[0] === 'e').map(([, fields]) => fields[1]!);
  }

  it('keeps every key of one run under one hash tag (one Redis Cluster slot), behind the prefix', async () => {
    const prefixed = new RedisStore({ client, prefix: 'app:' });
    const key = freshKey('slots');
    const { runId } = await prefixed.open(key, LONG);
    await prefixed.append(key, runId, [body('1')]);
    const keys = (await client.keys(`*${key}*`)).sort();
    expect(keys).toEqual([`app:{${key}}:events`, `app:{${key}}:lease`, `app:{${key}}:run`]);
    await prefixed.end(key, runId, 'done');
    await expect(client.keys(`*${key}*`)).resolves.toHaveLength(2); // the lease is gone with the end
    await prefixed.close();
  });

  it('records a lapsed lease as "lost" once, durably: every reader, on any connection, reads the same end', async () => {
    const key = freshKey('lost');
    const lease = 300;
    const { runId } = await store.open(key, { ttl: 60_000, lease, maxEvents: 100 });
    await store.append(key, runId, ['1', '2'].map(body));
    const lastRenewal = Date.now();
    let wakes = 0;
    const stop = await store.watch(key, () => (wakes += 1));
    const wakesBefore = wakes;
    // Followers poll, as follow.ts does, every lease * 0.25 ms.
    let lostAt = 0;
    await eventually(async () => {
      const read = await store.read(key, 0, 100);
      if (read.end === undefined) return false;
      expect(read.end).toBe('lost');
      lostAt = Date.now();
      return true;
    }, 10_000, 'a read reporting the lapsed lease');
    console.log(`lease ${lease} ms: a polling reader saw 'lost' ${lostAt - lastRenewal} ms after the last renewal`);

    // Many readers at once, on two connections, including ones that raced the first.
    const other = server.connect();
    const otherStore = new RedisStore({ client: other });
    const reads = await Promise.all(
      Array.from({ length: 50 }, (_, index) => (index % 2 === 0 ? store : otherStore).read(key, index % 3, 100)),
    ).finally(() => other.quit());
    for (const read of reads) expect(read).toMatchObject({ runId, tail: 2, end: 'lost' });
    await expect(endEntries(key)).resolves.toEqual(['lost']);
    await expect(client.hget(`sse:{${key}}:run`, 'ended')).resolves.toBe('lost');
    // Followers are woken by the end, and the late producer can do nothing more.
    await eventually(async () => wakes > wakesBefore, 10_000, 'a wake-up for the lost end');
    await expect(store.renew(key, runId)).resolves.toBe(false);
    await expect(store.append(key, runId, [body('3')])).resolves.toBe(false);
    await expect(store.end(key, runId, 'done')).resolves.toBe(false);
    await expect(store.abort(key)).resolves.toBe(false);
    await expect(endEntries(key)).resolves.toEqual(['lost']);
    stop();
  });

  it('does not lose a lease renewed every lease * 0.2 ms', async () => {
    const key = freshKey('renewed');
    const lease = 500;
    const { runId } = await store.open(key, { ttl: 60_000, lease, maxEvents: 100 });
    const started = Date.now();
    let renewals = 0;
    let reads = 0;
    while (Date.now() - started < 3 * lease) {
      await delay(lease * 0.2);
      await expect(store.renew(key, runId)).resolves.toBe(true);
      renewals += 1;
      await expect(store.read(key, 0, 10)).resolves.toMatchObject({ end: undefined });
      reads += 1;
    }
    console.log(`lease ${lease} ms: ${renewals} renewals and ${reads} reads over ${Date.now() - started} ms, never lost`);
    await expect(store.append(key, runId, [body('1')])).resolves.toBe(1);
  });

  it('marks a lapsed lease "lost" on abort() too, which then reports no live run', async () => {
    const key = freshKey('lost-abort');
    const { runId } = await store.open(key, { ttl: 60_000, lease: 50, maxEvents: 10 });
    await eventually(async () => (await client.exists(`sse:{${key}}:lease`)) === 0, 10_000, 'the lease key to expire');
    await expect(store.abort(key)).resolves.toBe(false);
    await expect(store.read(key, 0, 10)).resolves.toMatchObject({ runId, end: 'lost' });
    await expect(endEntries(key)).resolves.toEqual(['lost']);
  });

  it('with replaceEnded, open() replaces a run whose lease lapsed before any read recorded it, and only then', async () => {
    const key = freshKey('replace-lapsed');
    const settings: RunSettings = { ttl: 60_000, lease: 60_000, maxEvents: 100, replaceEnded: true };
    const { runId } = await store.open(key, settings);
    await store.append(key, runId, [body('1')]);
    await expect(store.open(key, settings)).resolves.toEqual({ runId, created: false });
    // What 0.6 × lease without a renewal leaves: the run hash says live, the lease key is gone.
    await client.del(`sse:{${key}}:lease`);
    await expect(store.open(key, { ...settings, replaceEnded: false })).resolves.toEqual({ runId, created: false });
    const replaced = await store.open(key, settings);
    expect(replaced.created).toBe(true);
    expect(replaced.runId).not.toBe(runId);
    await expect(store.read(key, 0, 10)).resolves.toMatchObject({ runId: replaced.runId, tail: 0, end: undefined });
    await expect(client.hget(`sse:{${key}}:run`, 'ended')).resolves.toBeNull();
    await expect(store.renew(key, replaced.runId)).resolves.toBe(true);
  });

  it('bounds the stream at about maxEvents entries (XADD MAXLEN ~) while reads show exactly the last maxEvents', async () => {
    const key = freshKey('maxlen');
    const maxEvents = 50;
    const { runId } = await store.open(key, { ...LONG, maxEvents });
    const [, nodeSize] = (await client.config('GET', 'stream-node-max-entries')) as [string, string];
    // Approximate trimming drops whole radix-tree nodes only, so up to one node's worth beyond the bound stays.
    const slack = Number(nodeSize);
    let highest = 0;
    for (let batch = 0; batch < 20; batch += 1) {
      await store.append(key, runId, Array.from({ length: 100 }, (_, index) => body(`${batch * 100 + index + 1}`)));
      const length = await client.xlen(`sse:{${key}}:events`);
      highest = Math.max(highest, length);
      expect(length).toBeGreaterThanOrEqual(maxEvents);
      expect(length).toBeLessThanOrEqual(maxEvents + slack);
    }
    console.log(`maxEvents ${maxEvents}, stream-node-max-entries ${slack}: XLEN stayed within ${maxEvents}..${highest} over 2000 events`);
    const read = await store.read(key, 0, 1000);
    expect(read.events.map((event) => event.seq)).toEqual(Array.from({ length: maxEvents }, (_, index) => 2000 - maxEvents + index + 1));
    expect(read).toMatchObject({ missed: 2000 - maxEvents, tail: 2000 });
  });

  it('subscribes once per key on one extra connection, and is back to 0 subscriptions after 1000 watch/stop cycles', async () => {
    const baseline = Number(await client.call('PUBSUB', 'NUMPAT')) + (await client.pubsub('CHANNELS', 'sse:*')).length;
    expect(baseline).toBe(0);
    const key = freshKey('cycles');
    const keys = Array.from({ length: 10 }, (_, index) => `${key}-${index}`);
    for (let cycle = 0; cycle < 1000; cycle += 1) {
      const stop = await store.watch(keys[cycle % keys.length]!, () => undefined);
      stop();
    }
    // Concurrent watchers of one key share its subscription.
    const stops = await Promise.all(Array.from({ length: 100 }, () => store.watch(key, () => undefined)));
    await expect(numsub(key)).resolves.toBe(1);
    for (const stop of stops) stop();
    await eventually(async () => (await client.pubsub('CHANNELS', 'sse:*')).length === 0, 10_000, 'every channel unsubscribed');
    for (const each of [key, ...keys]) await expect(numsub(each)).resolves.toBe(0);
    // This test's client and the store's one subscriber (the earlier tests' clients may take a moment to go).
    await eventually(async () => (await connections()) === 2, 10_000, 'two connections');
  });

  it('wakes a watch that started right after the last watch of its key stopped', async () => {
    const key = freshKey('rewatch');
    const { runId } = await store.open(key, LONG);
    let wakes = 0;
    for (let cycle = 0; cycle < 50; cycle += 1) (await store.watch(key, () => undefined))();
    const stop = await store.watch(key, () => (wakes += 1));
    await store.append(key, runId, [body('1')]);
    await eventually(async () => wakes > 0, 10_000, 'the new watch woken');
    await expect(numsub(key)).resolves.toBe(1);
    stop();
  });

  it('close() quits only its own subscriber: the client passed in stays connected', async () => {
    const key = freshKey('close');
    await store.watch(key, () => undefined);
    await expect(numsub(key)).resolves.toBe(1);
    await Promise.all([store.close(), store.close()]);
    await eventually(async () => (await connections()) === 1, 10_000, 'the subscriber to disconnect');
    expect(client.status).toBe('ready');
    await expect(client.ping()).resolves.toBe('PONG');
    await expect(numsub(key)).resolves.toBe(0);
    await expect(store.watch(key, () => undefined)).rejects.toThrow('watch() after close()');
    // Commands on the user's client still work after close().
    await expect(store.read(key, 0, 10)).resolves.toMatchObject({ runId: undefined });
  });

  it('close() without any watch opens no connection', async () => {
    const key = freshKey('no-watch');
    const { runId } = await store.open(key, LONG);
    await store.append(key, runId, [body('1')]);
    await store.read(key, 0, 10);
    // The earlier tests' connections may take a moment to go; the store has none of its own.
    await eventually(async () => (await connections()) === 1, 10_000, 'only this test\'s client connected');
    await store.close();
    expect(client.status).toBe('ready');
  });

  it('reloads its scripts when the server lost them (SCRIPT FLUSH, a restart, a failover)', async () => {
    const key = freshKey('noscript');
    const { runId } = await store.open(key, LONG);
    await client.script('FLUSH');
    await expect(store.append(key, runId, [body('1')])).resolves.toBe(1);
    await expect(store.read(key, 0, 10)).resolves.toMatchObject({ tail: 1 });
  });

  it('keeps a run 2 × ttl from its open, and ttl after its end', async () => {
    const key = freshKey('ttl');
    const ttl = 10_000;
    const { runId } = await store.open(key, { ttl, lease: 60_000, maxEvents: 10 });
    await store.append(key, runId, [body('1')]);
    const live = await client.pttl(`sse:{${key}}:run`);
    expect(live).toBeGreaterThan(ttl);
    expect(live).toBeLessThanOrEqual(2 * ttl);
    const events = await client.pttl(`sse:{${key}}:events`);
    expect(events).toBeGreaterThan(ttl);
    expect(events).toBeLessThanOrEqual(live);
    await store.end(key, runId, 'done');
    for (const name of ['run', 'events']) {
      const left = await client.pttl(`sse:{${key}}:${name}`);
      expect(left).toBeGreaterThan(0);
      expect(left).toBeLessThanOrEqual(ttl);
    }
  });

  it('keeps a live run 2 × ttl from its last renewal, so a long-lived one (a channel) never expires under its producers', async () => {
    const key = freshKey('renewed');
    const ttl = 10_000;
    const { runId } = await store.open(key, { ttl, lease: 60_000, maxEvents: 10 });
    await store.append(key, runId, [body('1')]);
    // As if the run were old: its keys close to expiry.
    await client.pexpire(`sse:{${key}}:run`, 500);
    await client.pexpire(`sse:{${key}}:events`, 500);
    await expect(store.renew(key, runId)).resolves.toBe(true);
    for (const name of ['run', 'events']) {
      const left = await client.pttl(`sse:{${key}}:${name}`);
      expect(left).toBeGreaterThan(ttl);
      expect(left).toBeLessThanOrEqual(2 * ttl);
    }
  });

  it('forgets an ended run after its ttl; the key can then be opened again as a new run', async () => {
    const key = freshKey('expire');
    const first = await store.open(key, { ttl: 100, lease: 60_000, maxEvents: 10 });
    await store.append(key, first.runId, [body('1')]);
    await store.end(key, first.runId, 'done');
    await eventually(async () => (await store.read(key, 0, 10)).runId === undefined, 10_000, 'the ended run to expire');
    await expect(client.keys(`*${key}*`)).resolves.toEqual([]);
    const second = await store.open(key, LONG);
    expect(second.created).toBe(true);
    expect(second.runId).not.toBe(first.runId);
    await expect(store.read(key, 0, 10)).resolves.toEqual({ runId: second.runId, events: [], missed: 0, tail: 0, end: undefined });
  });

  it('rejects invalid options and keys with a TypeError naming them', async () => {
    const options = (value: unknown): ConstructorParameters<typeof RedisStore>[0] => value as ConstructorParameters<typeof RedisStore>[0];
    expect(() => new RedisStore(options(undefined))).toThrow(/^options: /);
    expect(() => new RedisStore(options({}))).toThrow(/^client: expected an ioredis client, got undefined/);
    expect(() => new RedisStore(options({ client: { get: () => undefined } }))).toThrow(/^client: /);
    expect(() => new RedisStore({ client, prefix: 'a{b}:' })).toThrow(/^prefix: /);
    expect(() => new RedisStore(options({ client, prefix: 7 }))).toThrow(/^prefix: /);
    expect(() => new RedisStore({ client, timeout: 0 })).toThrow(/^timeout: expected 1 to 2147483647 milliseconds, got 0/);
    expect(() => new RedisStore({ client, timeout: 1.5 })).toThrow(/^timeout: expected a non-negative integer/);
    expect(() => new RedisStore(options({ client, timeout: '5000' }))).toThrow(/^timeout: /);
    expect(() => new RedisStore({ client, timeout: 2 ** 31 })).toThrow(/^timeout: /);
    expect(() => new RedisStore(options({ client, timeuot: 5000 }))).toThrow(/^timeuot: not an option of RedisStore/);
    await expect(store.open('', LONG)).rejects.toThrow(TypeError);
    await expect(store.watch('', () => undefined)).rejects.toThrow(/^key: /);
    await expect(store.read('k', -1, 10)).rejects.toThrow(/^after: /);
    await expect(store.read('k', 0, 0)).rejects.toThrow(/^limit: /);
  });
});

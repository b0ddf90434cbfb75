/**
 * Resumable routes on a RedisStore when Redis fails: no server at startup, a server killed with SIGKILL and
 * restarted on its port mid-stream, a full server (`maxmemory` with `noeviction`), a slow one (`CLIENT PAUSE`), and
 * clients with `enableOfflineQueue: false`. Each test prints its figure (docs/redis-faults.md quotes them).
 *
 * Throughout: no unhandled rejection, no uncaught exception, and nothing printed by ioredis (`[ioredis] Unhandled
 * error event` is what a connection without an 'error' listener prints). The app's own client gets an 'error'
 * listener, as an app's should; the store's connections are the store's business.
 *
 * Needs redis-server: `apt-get update && apt-get install -y redis-server`. Run with `npm run test:integration`.
 */
import { randomUUID } from 'node:crypto';
import express from 'express';
import Redis, { type RedisOptions } from 'ioredis';
import { sseStream, type SseStream } from '../../lib';
import { Appender } from '../../lib/feed/append';
import { RedisStore } from '../../lib/store/redis';
import { deferred, type Deferred } from '../helpers/deferred';
import { freePort } from '../helpers/ports';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { delay, eventually, listen, openStream, type StreamClient, type TestServer } from '../helpers/sse-client';

const TIMEOUT = 1000;
const LEASE = 1000;
const UNAVAILABLE = { type: 'error', message: 'The stream is temporarily unavailable' };
const LOST = { type: 'error', message: 'The run stopped unexpectedly' };

const datas = (client: StreamClient): string[] => client.events.map((event) => event.data);
const parsed = (client: StreamClient): unknown[] => datas(client).map((data) => (data.startsWith('{') ? (JSON.parse(data) as unknown) : data));

/** Everything that must not happen: unhandled rejections, uncaught exceptions, ioredis printing to the console. */
const problems: string[] = [];
const warnings: string[] = [];
const onRejection = (reason: unknown): void => void problems.push(`unhandledRejection: ${String(reason)}`);
const onException = (error: Error): void => void problems.push(`uncaughtException: ${error.stack ?? String(error)}`);
const consoleError = console.error;
const emitWarning = process.emitWarning;
const stderrWrite = process.stderr.write;

beforeAll(() => {
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  // Spied rather than listened to: Jest's sandbox does not deliver the process's 'warning' events to a test.
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]): void => {
    warnings.push(String(warning));
    (emitWarning as (warning: string | Error, ...rest: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  console.error = (...args: unknown[]): void => {
    if (args.some((arg) => String(arg).includes('[ioredis]'))) problems.push(`console.error: ${args.map(String).join(' ')}`);
    consoleError(...args);
  };
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    if (String(chunk).includes('[ioredis]')) problems.push(`stderr: ${String(chunk)}`);
    return (stderrWrite as (chunk: string | Uint8Array, ...rest: unknown[]) => boolean).call(process.stderr, chunk, ...rest);
  }) as typeof process.stderr.write;
});
afterAll(() => {
  process.off('unhandledRejection', onRejection);
  process.off('uncaughtException', onException);
  process.emitWarning = emitWarning;
  console.error = consoleError;
  process.stderr.write = stderrWrite;
});

/** The app's client: with an 'error' listener, as the app's own connection should have. */
function appClient(port: number, options: RedisOptions = {}): Redis {
  const client = new Redis({ host: '127.0.0.1', port, ...options });
  client.on('error', () => undefined);
  return client;
}

const ready = (client: Redis): Promise<void> => eventually(() => client.status === 'ready', 20_000, 'the client to be ready');

interface App {
  server: TestServer;
  /** Times the route ran, by key. */
  runs: Map<string, number>;
  url(key: string): string;
}

/** A resumable route on `store`; `route` gets the run's `res.sse` and how many times the route ran for its key. */
async function startApp(store: RedisStore, route: (sse: SseStream, run: number, key: string) => void | Promise<void>): Promise<App> {
  const runs = new Map<string, number>();
  const app = express();
  app.get(
    '/runs/:key',
    sseStream({ done: '[DONE]', heartbeat: 0, resume: { key: (req) => String(req.params.key), store, lease: LEASE } }),
    (req, res) => {
      const key = String(req.params.key);
      const run = (runs.get(key) ?? 0) + 1;
      runs.set(key, run);
      void route(res.sse, run, key);
    },
  );
  const server = await listen(app);
  return { server, runs, url: (key) => `${server.url}/runs/${key}` };
}

const usedMemory = async (admin: Redis): Promise<number> => Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);

/**
 * Fills Redis: `maxmemory` 1 MiB above what it uses, filler until a write is refused (OOM), then `maxmemory` below
 * what it uses, so that writes stay refused (the query buffer of a refused write counts until it is freed).
 * Resolves with the MiB used.
 */
async function fill(admin: Redis): Promise<number> {
  await admin.config('SET', 'maxmemory', String((await usedMemory(admin)) + 1024 * 1024));
  const chunk = 'x'.repeat(16 * 1024);
  for (let i = 0; ; i += 1) {
    try {
      await admin.set(`filler:${i}`, chunk);
    } catch (error) {
      expect(String(error)).toMatch(/OOM/);
      break;
    }
  }
  const used = await usedMemory(admin);
  await admin.config('SET', 'maxmemory', String(used - 64 * 1024));
  await expect(admin.set('filler:probe', 'x')).rejects.toThrow(/OOM/);
  return Math.round(used / 1024 / 10.24) / 100;
}

async function unfill(admin: Redis): Promise<void> {
  const keys = await admin.keys('filler:*');
  if (keys.length > 0) await admin.del(...keys);
  await admin.config('SET', 'maxmemory', '0');
}

describe('RedisStore when Redis fails', () => {
  let redis: RedisServer | undefined;
  let app: App | undefined;
  const closing: Array<() => Promise<unknown>> = [];

  afterEach(async () => {
    await app?.server.close();
    app = undefined;
    for (const close of closing.splice(0).reverse()) await close().catch(() => undefined);
    await redis?.stop();
    redis = undefined;
    expect(problems.splice(0)).toEqual([]);
    warnings.length = 0;
  });

  function track(client: Redis, store: RedisStore): void {
    closing.push(async () => client.disconnect());
    closing.push(() => store.close());
  }

  test('no server at startup: the request waits about `timeout`, gets an error event without done, and its retry runs the route once Redis is up', async () => {
    const port = await freePort();
    const client = appClient(port);
    const store = new RedisStore({ client, timeout: TIMEOUT });
    track(client, store);
    app = await startApp(store, (sse) => {
      sse.push('hello');
      void sse.close();
    });

    const key = `down-${randomUUID()}`;
    const started = Date.now();
    const first = await openStream(app.url(key));
    const headersAfter = Date.now() - started;
    await first.ended;
    const waited = Date.now() - started;
    console.log(`Redis down at startup, timeout ${TIMEOUT} ms: 200 after ${headersAfter} ms, the stream ended after ${waited} ms with ${datas(first).join(' | ')}`);
    expect(first.status).toBe(200);
    expect(parsed(first)).toEqual([UNAVAILABLE]);
    expect(waited).toBeGreaterThanOrEqual(TIMEOUT - 20);
    expect(waited).toBeLessThan(TIMEOUT + 1500);
    expect(app.runs.get(key)).toBeUndefined();
    expect(warnings.some((warning) => warning.includes(`open() had no answer from Redis within ${TIMEOUT} ms`))).toBe(true);

    // Redis comes up where the client looks for it; the client's next request (EventSource's retry) runs the route.
    redis = await startRedisServer({ port });
    await ready(client);
    const second = await openStream(app.url(key), { headers: { 'Last-Event-ID': 'whatever' } });
    await second.ended;
    expect(datas(second)).toEqual(['hello', '[DONE]']);
    expect(app.runs.get(key)).toBe(1);
  }, 30_000);

  test('redis-server killed with SIGKILL mid-stream and restarted on its port: the client is told to come back, and coming back runs the route again', async () => {
    redis = await startRedisServer();
    const { port } = redis;
    const client = appClient(port);
    await ready(client);
    const store = new RedisStore({ client, timeout: TIMEOUT });
    track(client, store);
    let current: SseStream | undefined;
    app = await startApp(store, (sse) => {
      current = sse;
      let n = 0;
      const timer = setInterval(() => sse.push({ n: ++n }), 20);
      sse.signal.addEventListener('abort', () => clearInterval(timer));
    });

    const key = `kill-${randomUUID()}`;
    const first = await openStream(app.url(key));
    await first.waitForCount(5);
    const producer = current!;
    const killed = Date.now();
    await redis.kill();
    await first.ended;
    const endedAfter = Date.now() - killed;
    await eventually(() => producer.closed, 20_000, 'the producer to stop');
    const producerStopped = Date.now() - killed;
    const received = first.events.length - 1;
    expect(parsed(first).at(-1)).toEqual(UNAVAILABLE);
    expect(datas(first)).not.toContain('[DONE]');
    expect(producer.closeReason).toBe('aborted');

    const restarted = Date.now();
    redis = await startRedisServer({ port });
    await ready(client);
    const second = await openStream(app.url(key), { headers: { 'Last-Event-ID': first.events.at(-2)!.id! } });
    await second.waitForCount(3);
    const resumedAfter = Date.now() - restarted;
    await current!.close();
    await second.ended;
    const subscriberWarnings = warnings.filter((warning) => warning.includes('subscriber connection'));
    console.log(
      `SIGKILL of redis-server after ${received} events (timeout ${TIMEOUT} ms, lease ${LEASE} ms): the client's stream ended ` +
        `${endedAfter} ms later with the error event and no done, the producer stopped after ${producerStopped} ms; ` +
        `after the restart a new request streamed again within ${resumedAfter} ms; subscriber-connection warnings: ${subscriberWarnings.length}`,
    );
    expect(second.events.slice(0, 3).map((event) => event.data)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
    expect(datas(second).at(-1)).toBe('[DONE]');
    expect(app.runs.get(key)).toBe(2);
    // One warning for the outage of the store's own connection, not one per reconnection attempt.
    expect(subscriberWarnings).toHaveLength(1);
  }, 60_000);

  test('a full Redis (maxmemory, noeviction): a follower that joins replays every stored event, then the end', async () => {
    redis = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'] });
    const client = appClient(redis.port);
    const admin = appClient(redis.port);
    await Promise.all([ready(client), ready(admin)]);
    const store = new RedisStore({ client, timeout: TIMEOUT });
    track(client, store);
    closing.push(async () => admin.disconnect());
    const N = 144;
    const full: Deferred<void> = deferred();
    let producer: SseStream | undefined;
    app = await startApp(store, async (sse) => {
      producer = sse;
      for (let n = 1; n <= N; n += 1) await sse.send({ n });
      await full.promise;
      // Refused: Redis is full. The producer gives up, and its lease lapses.
      await sse.send({ n: N + 1 });
    });

    const key = `full-${randomUUID()}`;
    const first = await openStream(app.url(key));
    await first.waitForCount(N);
    const fillers = await fill(admin);
    full.resolve();
    await eventually(() => producer!.closed, 10_000, 'the producer to give up');
    await eventually(async () => (await admin.exists(`sse:{run:${key}}:lease`)) === 0, 10_000, 'the lease to lapse');
    await expect(admin.set('probe', 'x')).rejects.toThrow(/OOM/);

    const started = Date.now();
    const follower = await openStream(app.url(key));
    await follower.ended;
    const replayed = follower.events.filter((event) => event.data.startsWith('{"n"')).length;
    console.log(
      `full Redis (noeviction, ${fillers} MiB used, writes refused): a joining follower replayed ${replayed} of ${N} stored events ` +
        `in ${Date.now() - started} ms, then ${datas(follower).slice(N).join(' | ')}`,
    );
    expect(replayed).toBe(N);
    expect(parsed(follower).slice(N)).toEqual([LOST, '[DONE]']);
    // Recording the end failed (Redis refuses writes), yet every follower reads the same end.
    await first.ended;
    expect(parsed(first).slice(N)).toEqual([LOST, '[DONE]']);
    const late = await openStream(app.url(key));
    await late.ended;
    expect(datas(late)).toEqual(datas(follower));
    expect(app.runs.get(key)).toBe(1);
    await unfill(admin);
  }, 60_000);

  test('a run refused at its first event (Redis full): its client is told to come back, and the next request runs the route', async () => {
    redis = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'] });
    const client = appClient(redis.port);
    const admin = appClient(redis.port);
    await Promise.all([ready(client), ready(admin)]);
    const store = new RedisStore({ client, timeout: TIMEOUT });
    track(client, store);
    closing.push(async () => admin.disconnect());
    const started: Deferred<void> = deferred();
    const full: Deferred<void> = deferred();
    app = await startApp(store, async (sse, run) => {
      if (run === 1) {
        started.resolve();
        await full.promise;
      }
      await sse.send(`run ${run}`);
      await sse.close();
    });

    const key = `first-${randomUUID()}`;
    const first = await openStream(app.url(key));
    await started.promise;
    await fill(admin);
    const refused = Date.now();
    full.resolve();
    await first.ended;
    const toldAfter = Date.now() - refused;
    expect(parsed(first)).toEqual([UNAVAILABLE]);
    expect(datas(first)).not.toContain('run 1');
    // The run is not left behind for ttl: the producer removed it.
    await expect(admin.exists(`sse:{run:${key}}:run`)).resolves.toBe(0);

    await unfill(admin);
    const second = await openStream(app.url(key));
    await second.ended;
    console.log(
      `first event refused (Redis full): the client was told to come back ${toldAfter} ms later; the next request ran the route ` +
        `(${app.runs.get(key)} runs) and got ${datas(second).join(' | ')}`,
    );
    expect(datas(second)).toEqual(['run 2', '[DONE]']);
    expect(app.runs.get(key)).toBe(2);
  }, 60_000);

  test('enableOfflineQueue: false: the first request of a process works, on a connected client and on one not connected yet', async () => {
    redis = await startRedisServer();
    const results: string[] = [];
    // `lazyConnect`: the client connects on its first command, which is the first request's open().
    for (const options of [{}, { lazyConnect: true }]) {
      const client = appClient(redis.port, { enableOfflineQueue: false, ...options });
      if (!('lazyConnect' in options)) await ready(client);
      const store = new RedisStore({ client, timeout: TIMEOUT });
      track(client, store);
      app = await startApp(store, (sse) => {
        sse.push('hello');
        void sse.close();
      });
      const status = client.status;
      const first = await openStream(app.url(`offline-${randomUUID()}`));
      await first.ended;
      results.push(`client '${status}' at the request: ${datas(first).join(' | ')}`);
      expect(datas(first)).toEqual(['hello', '[DONE]']);
      await app.server.close();
      app = undefined;
    }
    console.log(`enableOfflineQueue: false, first request: ${results.join('; ')}`);
  }, 30_000);

  test('a slow Redis (CLIENT PAUSE): an append retried after its deadline is stored once, and an open answered too late leaves no run', async () => {
    redis = await startRedisServer();
    const client = appClient(redis.port);
    const admin = appClient(redis.port);
    await Promise.all([ready(client), ready(admin)]);
    const timeout = 300;
    const store = new RedisStore({ client, timeout });
    track(client, store);
    closing.push(async () => admin.disconnect());
    const settings = { ttl: 60_000, lease: 60_000, maxEvents: 100 };

    const key = `slow-${randomUUID()}`;
    const { runId } = await store.open(key, settings);
    let refused = false;
    const appender = new Appender(store, key, runId, { maxEvents: 100, onRefused: () => (refused = true) });
    // The first try goes unanswered past its deadline; it is carried out once the pause ends, during the retry.
    await admin.call('CLIENT', 'PAUSE', '500', 'ALL');
    appender.add('data: 1\n\n');
    await expect(appender.durable()).resolves.toBe(true);
    const read = await store.read(key, 0, 100);
    const appendTimeouts = warnings.filter((warning) => warning.includes('append() had no answer')).length;
    console.log(`CLIENT PAUSE 500 ms, timeout ${timeout} ms: ${appendTimeouts} append try timed out, the event is stored ${read.events.length} time(s), tail ${read.tail}`);
    expect(appendTimeouts).toBeGreaterThanOrEqual(1);
    expect(read.events.map((event) => event.seq)).toEqual([1]);
    expect(refused).toBe(false);

    const late = `late-open-${randomUUID()}`;
    await admin.call('CLIENT', 'PAUSE', '600', 'ALL');
    await expect(store.open(late, settings)).rejects.toThrow(`RedisStore: open() had no answer from Redis within ${timeout} ms`);
    // The open is carried out after the pause; the store then removes the run no one produces.
    await delay(700);
    await eventually(async () => (await admin.exists(`sse:{${late}}:run`)) === 0, 10_000, 'the late run to be removed');
    await expect(store.open(late, settings)).resolves.toMatchObject({ created: true });
  }, 30_000);
});

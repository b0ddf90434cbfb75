/**
 * What bounds the memory store as a whole: `maxRuns` and `maxBytes`. Past either, ended runs are evicted in the
 * order they ended (a client that comes back for one finds it gone, and the route runs again); with only live runs
 * left a new run is refused with a 503 and `Retry-After` before any stream header, never by growing; a live run's
 * appends are never refused; channels, which are live runs, are never evicted.
 */
import express from 'express';
import { MemoryStore, StoreFullError, sseChannel, sseStream, type SseStream } from '../../lib';
import { Turns, type Deferred } from '../helpers/deferred';
import { TimeoutTracker } from '../helpers/timers';
import { eventually, listen, openStream, type StreamClient, type TestServer } from '../helpers/sse-client';

const UNAVAILABLE = '{"type":"error","message":"The stream is temporarily unavailable"}';

describe('MemoryStore bounds: maxRuns, maxBytes', () => {
  let server: TestServer;
  const stores = {
    order: new MemoryStore({ maxRuns: 3 }),
    replay: new MemoryStore({ maxRuns: 1 }),
    live: new MemoryStore({ maxRuns: 2 }),
    channels: new MemoryStore({ maxRuns: 2 }),
    bytes: new MemoryStore({ maxBytes: 1000 }),
    appends: new MemoryStore({ maxBytes: 1000 }),
  };
  type StoreName = keyof typeof stores;
  /** Each run's `res.sse` by `store/key#n` (the n-th time the route ran for that key), for the test to drive. */
  const runs = new Turns<string, SseStream>();
  const routeRuns = new Map<string, number>();
  const runOf = (store: StoreName, key: string, n = 1): Deferred<SseStream> => runs.get(`${store}/${key}#${n}`);

  beforeAll(async () => {
    const app = express();
    for (const [name, store] of Object.entries(stores)) {
      app.get(`/${name}/:key`, sseStream({ done: '[DONE]', heartbeat: 0, resume: { key: (req) => String(req.params.key), store } }), (req, res) => {
        const id = `${name}/${String(req.params.key)}`;
        const n = (routeRuns.get(id) ?? 0) + 1;
        routeRuns.set(id, n);
        runs.get(`${id}#${n}`).resolve(res.sse);
      });
    }
    server = await listen(app);
  });
  afterAll(() => server.close());

  const open = (store: StoreName, key: string, lastEventId?: string): Promise<StreamClient> =>
    openStream(`${server.url}/${store}/${key}`, { headers: lastEventId === undefined ? {} : { 'Last-Event-ID': lastEventId } });
  const datas = (client: StreamClient): string[] => client.events.map((event) => event.data);
  const runIdOf = async (store: StoreName, key: string): Promise<string | undefined> => (await stores[store].read(`run:${key}`, 0, 1)).runId;
  /** Runs the route for a new key to its end: `events` pushed, then closed, with one client reading it all. */
  const finishedRun = async (store: StoreName, key: string, events: readonly unknown[]): Promise<StreamClient> => {
    const client = await open(store, key);
    const run = await runOf(store, key, routeRuns.get(`${store}/${key}`)).promise;
    for (const event of events) run.push(event);
    await run.close();
    await client.ended;
    return client;
  };

  test('bad or unknown options throw a TypeError naming the option', () => {
    expect(() => new MemoryStore({ maxRuns: 0 })).toThrow(new TypeError('maxRuns: must be at least 1'));
    expect(() => new MemoryStore({ maxRuns: -1 })).toThrow(new TypeError('maxRuns: expected a non-negative integer, got number -1'));
    expect(() => new MemoryStore({ maxRuns: 1.5 })).toThrow(new TypeError('maxRuns: expected a non-negative integer, got number 1.5'));
    expect(() => new MemoryStore({ maxRuns: '10' as unknown as number })).toThrow(
      new TypeError('maxRuns: expected a non-negative integer, got the string "10"'),
    );
    expect(() => new MemoryStore({ maxBytes: 0 })).toThrow(new TypeError('maxBytes: must be at least 1'));
    expect(() => new MemoryStore({ maxBytes: Infinity })).toThrow(new TypeError('maxBytes: expected a non-negative integer, got number Infinity'));
    expect(() => new MemoryStore({ maxEvents: 10 } as never)).toThrow(new TypeError('maxEvents: not an option of MemoryStore'));
    expect(() => new MemoryStore(null as never)).toThrow(new TypeError('options: expected an object, got null'));
    expect(() => new MemoryStore({ maxRuns: 1, maxBytes: 1 })).not.toThrow();
    expect(new MemoryStore({ maxRuns: undefined, maxBytes: undefined }).bytes).toBe(0);
  });

  test('past maxRuns the run that ended first is evicted: its late client sees the route run again, the others replay', async () => {
    // Opened a, b, c; ended b, a, c: eviction goes by end, not by start.
    const a = await open('order', 'a');
    const runA = await runOf('order', 'a').promise;
    runA.push('a1');
    await finishedRun('order', 'b', ['b1']);
    await runA.close();
    await a.ended;
    await finishedRun('order', 'c', ['c1']);
    const idOfA = await runIdOf('order', 'a');
    expect(stores.order.size).toBe(3);

    await finishedRun('order', 'd', ['d1']);
    expect(stores.order.size).toBe(3);
    expect(await runIdOf('order', 'b')).toBeUndefined();
    expect(await runIdOf('order', 'a')).toBe(idOfA);

    // a is still kept: a late client replays it, the route does not run again.
    const lateA = await open('order', 'a');
    await lateA.ended;
    expect(datas(lateA)).toEqual(['a1', '[DONE]']);
    expect(routeRuns.get('order/a')).toBe(1);

    // b was evicted: its late client (even with an id of the old run) starts it again, which evicts a, now the oldest.
    const lateB = await open('order', 'b', `${idOfA}.1`);
    const again = await runOf('order', 'b', 2).promise;
    again.push('b1 again');
    await again.close();
    await lateB.ended;
    expect(routeRuns.get('order/b')).toBe(2);
    expect(datas(lateB)).toEqual(['b1 again', '[DONE]']);
    expect(await runIdOf('order', 'a')).toBeUndefined();
    expect(stores.order.size).toBe(3);
  });

  test('a client replaying a run when it is evicted gets an error event without done, so it comes back and the route runs again', async () => {
    const line = 'r'.repeat(5000);
    // 20 MB: more than the loopback socket buffers take, so the paused client is still replaying at the eviction.
    await finishedRun('replay', 'long', Array.from({ length: 4000 }, (_, i) => `${i + 1} ${line}`));
    const slow = await open('replay', 'long');
    slow.pause();
    await slow.waitForCount(1);
    // maxRuns 1: the next run takes the place of the ended one.
    await finishedRun('replay', 'next', ['n1']);
    expect(await runIdOf('replay', 'long')).toBeUndefined();
    slow.resume();
    await slow.ended;
    const got = datas(slow);
    expect(got.at(-1)).toBe(UNAVAILABLE);
    expect(got).not.toContain('[DONE]');
    expect(got.length).toBeLessThan(4000);
    expect(got.slice(0, -1)).toEqual(Array.from({ length: got.length - 1 }, (_, i) => `${i + 1} ${line}`));

    // What EventSource does next: it comes back with the last id it got, and the route runs again.
    const back = await open('replay', 'long', slow.events.at(-2)!.id);
    const again = await runOf('replay', 'long', 2).promise;
    again.push('long again');
    await again.close();
    await back.ended;
    expect(datas(back)).toEqual(['long again', '[DONE]']);
  });

  test('a watcher of an evicted key is woken and reads no run, as at ttl expiry', async () => {
    const store = new MemoryStore({ maxRuns: 1 });
    const settings = { ttl: 60_000, lease: 5000, maxEvents: 10 };
    const { runId } = await store.open('old', settings);
    await store.append('old', runId, ['data: 1\n\n']);
    await store.end('old', runId, 'done');
    let wakes = 0;
    const unwatch = await store.watch('old', () => (wakes += 1));
    await store.open('new', settings);
    expect(wakes).toBe(1);
    expect(await store.read('old', 0, 10)).toEqual({ runId: undefined, events: [], missed: 0, tail: 0, end: undefined });
    unwatch();
  });

  test("an evicted run's expiry timer is cleared with it", async () => {
    const store = new MemoryStore({ maxRuns: 1 });
    const settings = { ttl: 600_000, lease: 5000, maxEvents: 10 };
    const timers = new TimeoutTracker();
    timers.enable();
    timers.tracking = true;
    const { runId } = await store.open('old', settings);
    await store.end('old', runId, 'done');
    timers.tracking = false;
    expect(timers.live.size).toBe(1);
    await store.open('new', settings);
    await eventually(() => timers.live.size === 0, 1000, 'the expiry timer of the evicted run to be cleared').finally(() => timers.disable());
  });

  test('with only live runs at maxRuns a new run gets 503 with Retry-After and no stream header; once one ends, the next is served', async () => {
    const first = await open('live', 'one');
    const runOne = await runOf('live', 'one').promise;
    const second = await open('live', 'two');
    const runTwo = await runOf('live', 'two').promise;
    runOne.push('one');
    await first.waitForCount(1);

    const refused = await open('live', 'three');
    await refused.ended;
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');
    expect(refused.headers['content-type']).not.toMatch(/text\/event-stream/);
    expect(refused.events).toEqual([]);
    expect(routeRuns.get('live/three')).toBeUndefined();
    expect(stores.live.size).toBe(2);

    // A full store still serves the followers of its live runs: they add no run.
    const follower = await open('live', 'one');
    expect(follower.status).toBe(200);
    await follower.waitForCount(1);

    await runOne.close();
    await first.ended;
    await follower.ended;
    expect(datas(follower)).toEqual(['one', '[DONE]']);
    const served = await open('live', 'three');
    expect(served.status).toBe(200);
    expect(served.headers['content-type']).toMatch(/^text\/event-stream/);
    const runThree = await runOf('live', 'three').promise;
    expect(await runIdOf('live', 'one')).toBeUndefined();
    expect(stores.live.size).toBe(2);

    runTwo.push('two');
    runThree.push('three');
    await Promise.all([runTwo.close(), runThree.close()]);
    await Promise.all([second.ended, served.ended]);
    expect(datas(second)).toEqual(['two', '[DONE]']);
    expect(datas(served)).toEqual(['three', '[DONE]']);
  });

  test('a channel is a live run: it is never evicted, and still delivers after the store turned over many runs', async () => {
    const news = sseChannel('news', { store: stores.channels });
    await news.send('opened');
    const channelRun = (await stores.channels.read('channel:news', 0, 1)).runId;
    expect(channelRun).toBeDefined();
    for (let i = 0; i < 5; i += 1) await finishedRun('channels', `run-${i}`, [i]);
    expect(stores.channels.size).toBe(2);
    expect((await stores.channels.read('channel:news', 0, 1)).runId).toBe(channelRun);
    expect(await news.send('still here')).toBe(true);
    expect((await stores.channels.read('channel:news', 0, 10)).events.map((event) => event.frame)).toEqual([
      `id: ${channelRun}.1\ndata: opened\n\n`,
      `id: ${channelRun}.2\ndata: still here\n\n`,
    ]);
    await news.close();
  });

  test('past maxBytes ended runs are evicted oldest first; bytes counts the characters of keys and stored frames', async () => {
    const store = stores.bytes;
    const text = 'x'.repeat(250);
    await finishedRun('bytes', 'first', [text]);
    const read = await store.read('run:first', 0, 10);
    // The key, and the stored frame with its id line.
    expect(store.bytes).toBe('run:first'.length + read.events[0]!.frame.length);
    expect(read.events[0]!.frame).toBe(`id: ${read.runId}.1\ndata: ${text}\n\n`);
    await finishedRun('bytes', 'second', [text]);
    await finishedRun('bytes', 'third', [text]);
    expect(store.size).toBe(3);
    expect(store.bytes).toBeLessThanOrEqual(1000);
    // Each run holds about 290 characters, so a fourth does not fit under 1000: the first run to end goes.
    await finishedRun('bytes', 'fourth', [text]);
    expect(await runIdOf('bytes', 'first')).toBeUndefined();
    expect(await runIdOf('bytes', 'second')).toBeDefined();
    expect(store.size).toBe(3);
    expect(store.bytes).toBeLessThanOrEqual(1000);
  });

  test('bytes follows what the ring holds: past maxEvents a new frame takes the place of the oldest one', async () => {
    const store = new MemoryStore();
    const { runId } = await store.open('ring', { ttl: 60_000, lease: 5000, maxEvents: 2 });
    await store.append('ring', runId, ['data: a\n\n', 'data: bb\n\n', 'data: ccc\n\n']);
    await store.append('ring', runId, ['data: dddd\n\n']);
    const { events } = await store.read('ring', 0, 10);
    expect(events.map((event) => event.seq)).toEqual([3, 4]);
    expect(store.bytes).toBe('ring'.length + events[0]!.frame.length + events[1]!.frame.length);
    // A replacement gives back what the run it replaces held.
    await store.end('ring', runId, 'done');
    await store.open('ring', { ttl: 60_000, lease: 5000, maxEvents: 2, replaceEnded: true });
    expect(store.bytes).toBe('ring'.length);
    expect(store.size).toBe(1);
  });

  test('a full store still replaces a run (replaceLive, replaceEnded): the new run takes its place, it adds none', async () => {
    const store = new MemoryStore({ maxRuns: 1, maxBytes: 100 });
    const settings = { ttl: 60_000, lease: 5000, maxEvents: 10 };
    const first = await store.open('chat', settings);
    await store.append('chat', first.runId, [`data: ${'x'.repeat(200)}\n\n`]);
    await expect(store.open('other', settings)).rejects.toBeInstanceOf(StoreFullError);
    const second = await store.open('chat', { ...settings, replaceLive: true });
    expect(second.created).toBe(true);
    expect(await store.append('chat', first.runId, ['data: stale\n\n'])).toBe(false);
    await store.end('chat', second.runId, 'done');
    expect((await store.open('chat', { ...settings, replaceEnded: true })).created).toBe(true);
    expect(store.size).toBe(1);
    expect(store.bytes).toBe('chat'.length);
  });

  test("a live run's appends are never refused past maxBytes: ended runs make room, then new runs are refused until it ends", async () => {
    const store = stores.appends;
    await finishedRun('appends', 'old', ['o'.repeat(200)]);
    const client = await open('appends', 'big');
    const big = await runOf('appends', 'big').promise;
    const events = Array.from({ length: 100 }, (_, i) => `${i} ${'b'.repeat(100)}`);
    for (const event of events.slice(0, 50)) expect(big.push(event)).toBe(true);
    for (const event of events.slice(50)) expect(await big.send(event)).toBe(true);
    await client.waitForCount(100);
    // About 11,000 characters held against a bound of 1000: the live run alone holds them, the ended one is gone.
    expect(store.bytes).toBeGreaterThan(10_000);
    expect(await runIdOf('appends', 'old')).toBeUndefined();
    expect(store.size).toBe(1);

    const refused = await open('appends', 'other');
    await refused.ended;
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');

    await big.close();
    await client.ended;
    expect(datas(client)).toEqual([...events, '[DONE]']);
    await finishedRun('appends', 'other', ['served']);
    await eventually(() => store.size === 1, 1000, 'the ended big run to make room');
    expect(await runIdOf('appends', 'big')).toBeUndefined();
    expect(store.bytes).toBeLessThanOrEqual(1000);
  });
});

/**
 * Broadcast channels on the in-memory store: one push reaches every subscriber, encoded once; a stalled subscriber
 * never holds the others back; a subscriber that comes back with Last-Event-ID gets what it missed within history.
 */
import type http from 'node:http';
import express from 'express';
import { MemoryStore, sseChannel, sseStream, type ResumeStore, type SseChannel } from '../../lib';
import { eventually, listen, openStream, type StreamClient, type TestServer } from '../helpers/sse-client';
import { wrapStore } from '../helpers/stores';
import { TimeoutTracker } from '../helpers/timers';

/** A real MemoryStore that counts the watches it has open: the listeners a subscription leaves behind. */
function countingStore(): { store: ResumeStore; watching: () => number } {
  const inner = new MemoryStore();
  let watching = 0;
  const store = wrapStore(inner, {
    async watch(key, onWake) {
      const unwatch = await inner.watch(key, onWake);
      watching += 1;
      return () => {
        watching -= 1;
        unwatch();
      };
    },
  });
  return { store, watching: () => watching };
}

describe('sseChannel()', () => {
  let server: TestServer;
  let stalledResponse: express.Response | undefined;
  const counted = countingStore();
  const channels = new Map<string, SseChannel>();
  const channel = (name: string): SseChannel => {
    let found = channels.get(name);
    if (found === undefined) channels.set(name, (found = sseChannel(name, { store: counted.store, history: 50 })));
    return found;
  };

  beforeAll(async () => {
    const app = express();
    app.get('/welcome/:name', sseStream({ heartbeat: 0 }), (req, res) => {
      const feed = channel(String(req.params.name));
      void res.sse.subscribe(feed);
      // Pushed right after subscribe(), before the subscription has its place in the store: it must still arrive.
      feed.push({ welcome: feed.subscriberCount });
    });
    app.get('/feeds/:name', sseStream({ done: '[DONE]', heartbeat: 0, highWaterMark: 16 * 1024 }), (req, res) => {
      if (req.get('X-Stalled') !== undefined) stalledResponse = res;
      void res.sse.subscribe(channel(String(req.params.name)));
    });
    server = await listen(app);
  });
  afterAll(() => server.close());

  const subscribe = async (name: string, headers: http.OutgoingHttpHeaders = {}, paused = false): Promise<StreamClient> => {
    const before = channel(name).subscriberCount;
    const client = await openStream(`${server.url}/feeds/${name}`, { headers, paused });
    // Subscribed once the channel counts it (the route subscribes right after the headers go out).
    await eventually(() => channel(name).subscriberCount > before, 5000, 'the subscription');
    return client;
  };
  const datas = (client: StreamClient): string[] => client.events.map((event) => event.data);

  test('1,000 subscribers of one channel receive identical sequences', async () => {
    const clients: StreamClient[] = [];
    for (let i = 0; i < 1000; i += 50) clients.push(...(await Promise.all(Array.from({ length: 50 }, () => subscribe('thousand')))));
    expect(channel('thousand').subscriberCount).toBe(1000);
    for (let n = 1; n <= 20; n += 1) expect(channel('thousand').push({ n })).toBe(true);
    await Promise.all(clients.map((client) => client.waitForCount(20, 20_000)));
    const expected = Array.from({ length: 20 }, (_, i) => `{"n":${i + 1}}`);
    for (const client of clients) expect(datas(client)).toEqual(expected);
    expect(new Set(clients.map((client) => client.raw())).size).toBe(1);
    for (const client of clients) client.abort();
    await eventually(() => channel('thousand').subscriberCount === 0, 10_000, 'every subscription to end');
  }, 60_000);

  test('a stalled subscriber does not delay the rest, and the server holds little for it', async () => {
    const stalled = await subscribe('stall', { 'X-Stalled': '1' }, true);
    const others = await Promise.all(Array.from({ length: 3 }, () => subscribe('stall')));
    const text = 'y'.repeat(20_000);
    // 20 MB for each subscriber, more than loopback sockets buffer, in steps the three readers keep up with; the
    // stalled one reads nothing of it.
    for (let n = 1; n <= 1000; n += 1) {
      channel('stall').push(`${n} ${text}`);
      if (n % 20 === 0) await Promise.all(others.map((client) => client.waitForCount(n, 20_000)));
    }
    for (const client of others) expect(client.events.map((event) => event.data.split(' ')[0])).toEqual(Array.from({ length: 1000 }, (_, i) => String(i + 1)));
    // The server holds no more than the response's highWaterMark and an event for the stalled client. The stream only
    // stops writing once res.write() returns false, which the socket decides by its own writableHighWaterMark: 16 KiB
    // up to Node 20, 64 KiB since Node 22 (stream.getDefaultHighWaterMark()). So the mark is the larger of the two.
    expect(stalled.events).toHaveLength(0);
    const mark = Math.max(16 * 1024, stalledResponse!.writableHighWaterMark);
    const largestFrame = Math.max(...others[0]!.raw().split('\n\n').map((frame) => frame.length + 2));
    expect(stalledResponse!.writableLength).toBeLessThanOrEqual(mark + largestFrame);
    // More than maxBuffer (4 MiB) behind, it was dropped as 'overflow' rather than left waiting: one subscriber fewer.
    expect(channel('stall').subscriberCount).toBe(3);
    expect(stalledResponse!.destroyed).toBe(true);
    stalled.resume();
    await stalled.ended;
    const held = stalled.events.map((event) => Number(event.data.split(' ')[0]));
    expect(held).toEqual(Array.from({ length: held.length }, (_, i) => i + 1));
    // Back with its Last-Event-ID and a history of 50, it hears how many it missed, then gets the last 50.
    const lastId = stalled.events.at(-1)?.id;
    const back = await subscribe('stall', lastId === undefined ? {} : { 'Last-Event-ID': lastId });
    await back.waitForEvent((event) => event.data === `1000 ${text}`, 20_000);
    console.log(`stalled subscriber: dropped after ${held.length} of 1000 events (20 KB each); back with Last-Event-ID: ${back.events.length} events`);
    expect(back.events[0]!.data).toMatch(/^\{"type":"missed","count":\d+\}$/);
    expect(back.events.slice(1).map((event) => Number(event.data.split(' ')[0]))).toEqual(Array.from({ length: 50 }, (_, i) => 951 + i));
    back.abort();
    for (const client of [stalled, ...others]) client.abort();
  }, 60_000);

  test('an event pushed right after subscribe() reaches that subscriber', async () => {
    const first = await openStream(`${server.url}/welcome/hello`);
    await first.waitForCount(1);
    const second = await openStream(`${server.url}/welcome/hello`);
    await second.waitForCount(1);
    await first.waitForCount(2);
    expect(first.events.map((event) => event.data)).toEqual(['{"welcome":0}', '{"welcome":1}']);
    expect(second.events.map((event) => event.data)).toEqual(['{"welcome":1}']);
    first.abort();
    second.abort();
  });

  test('a burst of pushes larger than history reaches a live subscriber whole', async () => {
    const client = await subscribe('burst');
    for (let n = 1; n <= 400; n += 1) channel('burst').push({ n });
    await client.waitForCount(400);
    expect(datas(client)).toEqual(Array.from({ length: 400 }, (_, i) => `{"n":${i + 1}}`));
    client.abort();
  });

  test('a new subscriber gets only what is pushed after it subscribed; one that comes back with Last-Event-ID gets what it missed', async () => {
    channel('history').push('before anyone');
    const first = await subscribe('history');
    channel('history').push('one');
    channel('history').push('two');
    await first.waitForCount(2);
    expect(datas(first)).toEqual(['one', 'two']);
    const lastId = first.events[0]!.id!;
    first.abort();
    await eventually(() => channel('history').subscriberCount === 0, 5000, 'the first subscriber to leave');
    channel('history').push('three');
    const back = await subscribe('history', { 'Last-Event-ID': lastId });
    await back.waitForCount(2);
    channel('history').push('four');
    await back.waitForCount(3);
    expect(datas(back)).toEqual(['two', 'three', 'four']);
    back.abort();
  });

  test('a channel whose run the store ended opens a new one: subscribers come back to it with nothing missed', async () => {
    const first = await subscribe('reopened');
    channel('reopened').push('one');
    await first.waitForCount(1);
    // What a lapsed lease does on Redis: the store ends the channel's run under it.
    expect(await counted.store.abort('channel:reopened')).toBe(true);
    await first.ended;
    const [one, error] = first.events;
    expect(one!.data).toBe('one');
    expect(JSON.parse(error!.data)).toEqual({ type: 'error', message: 'The stream is no longer available' });
    expect(first.events).toHaveLength(2); // no [DONE]: EventSource comes back
    expect(channel('reopened').push('two')).toBe(true);
    // The browser comes back with the id of the old run: it gets all of the new one.
    const back = await subscribe('reopened', { 'Last-Event-ID': one!.id! });
    channel('reopened').push('three');
    await back.waitForCount(2);
    expect(datas(back)).toEqual(['two', 'three']);
    const runs = new Set([one!.id!, ...back.events.map((event) => event.id!)].map((id) => id.split('.')[0]));
    expect(runs.size).toBe(2);
    back.abort();
  });

  test('send() resolves true once the event and every push before it are in the store, false after close()', async () => {
    const inner = new MemoryStore();
    // A store that takes its time, as Redis over a network does.
    const slow = wrapStore(inner, {
      append: async (key, runId, bodies) => {
        await new Promise((resolve) => setTimeout(resolve, 50));
        return inner.append(key, runId, bodies);
      },
    });
    const sent = sseChannel('sent', { store: slow });
    sent.push('first');
    await expect(sent.send('second')).resolves.toBe(true);
    const read = await inner.read('channel:sent', 0, 10);
    expect(read.events.map((event) => event.frame.split('\n')[1])).toEqual(['data: first', 'data: second']);
    await expect(sent.send(undefined)).rejects.toThrow(TypeError);
    await expect(sent.send('x', { id: 1 })).rejects.toThrow(new TypeError('id: a channel numbers its events itself'));
    await sent.close();
    await expect(sent.send('late')).resolves.toBe(false);
  });

  test('close() ends every subscription with done, and pushes after it return false', async () => {
    const closing = sseChannel('closing', { store: counted.store });
    channels.set('closing', closing);
    const clients = await Promise.all([subscribe('closing'), subscribe('closing')]);
    closing.push('last');
    await Promise.all(clients.map((client) => client.waitForCount(1)));
    await closing.close();
    await Promise.all(clients.map((client) => client.ended));
    for (const client of clients) expect(datas(client)).toEqual(['last', '[DONE]']);
    expect(closing.push('late')).toBe(false);
    expect(closing.subscriberCount).toBe(0);
  });

  test('1,000 subscribe/disconnect cycles leave no watch, timer or listener behind', async () => {
    const timers = new TimeoutTracker();
    timers.enable();
    channel('cycles');
    const watchingBefore = counted.watching();
    const listenersBefore = server.server.listenerCount('request') + server.server.listenerCount('connection');
    timers.tracking = true;
    for (let i = 0; i < 1000; i += 100) {
      const batch = await Promise.all(Array.from({ length: 100 }, () => subscribe('cycles')));
      channel('cycles').push({ i });
      await Promise.all(batch.map((client) => client.waitForCount(1)));
      for (const client of batch) client.abort();
      await Promise.all(batch.map((client) => client.ended));
      await eventually(() => channel('cycles').subscriberCount === 0, 5000, 'the batch to unsubscribe');
    }
    timers.tracking = false;
    // Node's own short timers (a socket's, the Date header cache) clear themselves; a stream's or feed's would not.
    await eventually(() => timers.live.size === 0, 3000, 'every timer to be cleared').catch(() => undefined);
    expect(channel('cycles').subscriberCount).toBe(0);
    expect(counted.watching()).toBe(watchingBefore);
    expect(timers.live.size).toBe(0);
    expect(server.server.listenerCount('request') + server.server.listenerCount('connection')).toBe(listenersBefore);
    timers.disable();
  }, 60_000);

  test('bad input is refused where it enters, with a TypeError naming it', async () => {
    expect(() => sseChannel('')).toThrow(new TypeError('name: expected a non-empty string, got the string ""'));
    expect(() => sseChannel('x', { history: 0 })).toThrow(new TypeError('history: must be at least 1'));
    expect(() => sseChannel('x', { histroy: 5 } as never)).toThrow(new TypeError('histroy: not an option of sseChannel()'));
    expect(() => channel('typed').push('x', { id: 1 })).toThrow(new TypeError('id: a channel numbers its events itself'));
    expect(() => channel('typed').push(undefined)).toThrow(TypeError);
    expect(() => channel('typed').push('x', null as never)).toThrow(new TypeError('options: expected an object, got null'));
    expect(() => sseChannel('x', { store: { open() {}, append() {} } as never })).toThrow(
      new TypeError('store: expected a ResumeStore (an object with open, append, renew, end, abort, read, watch), got object'),
    );

    const app = express();
    const outcomes: unknown[] = [];
    app.get('/ndjson', sseStream({ format: 'ndjson', heartbeat: 0 }), async (_req, res) => {
      outcomes.push(await res.sse.subscribe(channel('typed')).catch((error: unknown) => error));
      outcomes.push(await res.sse.subscribe({} as SseChannel).catch((error: unknown) => error));
      await res.sse.close();
    });
    app.get('/twice', sseStream({ heartbeat: 0 }), async (_req, res) => {
      void res.sse.subscribe(channel('typed'));
      outcomes.push(await res.sse.subscribe(channel('typed')).catch((error: unknown) => error));
      await res.sse.close();
    });
    const local = await listen(app);
    try {
      await (await openStream(`${local.url}/ndjson`)).ended;
      await (await openStream(`${local.url}/twice`)).ended;
    } finally {
      await local.close();
    }
    expect(outcomes).toEqual([
      new TypeError('subscribe: channels send SSE frames; this stream is NDJSON'),
      new TypeError('channel: expected a channel made by sseChannel()'),
      new TypeError('subscribe: this stream already follows a channel'),
    ]);
  });
});

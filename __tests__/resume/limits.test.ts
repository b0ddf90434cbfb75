/**
 * What bounds a resumable run on the memory store: `maxEvents` (oldest dropped, a late client told how many it
 * missed), `ttl` (a run that goes on too long is stopped; an ended one is forgotten), and a slow client, which is
 * served at its own pace from the store instead of being dropped.
 */
import express from 'express';
import { MemoryStore, sseStream, type SseStream } from '../../lib';
import { Turns, type Deferred } from '../helpers/deferred';
import { delay, eventually, listen, openStream, type TestServer } from '../helpers/sse-client';
import { TimeoutTracker } from '../helpers/timers';
import { collectGarbage, MIB } from '../reliability/support';

describe('resumable run limits', () => {
  let server: TestServer;
  const store = new MemoryStore();
  const shortStore = new MemoryStore();
  const runs = new Turns<string, SseStream>();
  const runOf = (key: string): Deferred<SseStream> => runs.get(key);
  const timers = new TimeoutTracker();

  beforeAll(async () => {
    const app = express();
    const route = (resume: { ttl?: number; maxEvents?: number; store?: MemoryStore }) =>
      [
        sseStream({ done: '[DONE]', heartbeat: 0, highWaterMark: 16 * 1024, maxBuffer: 64 * 1024, resume: { key: (req) => String(req.params.key), store, ...resume } }),
        (req: express.Request, res: express.Response) => runOf(String(req.params.key)).resolve(res.sse),
      ] as const;
    app.get('/bounded/:key', ...route({ maxEvents: 100 }));
    app.get('/short/:key', ...route({ ttl: 300, store: shortStore }));
    app.get('/plain/:key', ...route({}));
    server = await listen(app);
  });
  afterAll(() => server.close());

  test('past maxEvents the store keeps only the newest: a live client gets a burst whole, a late one hears how many it missed', async () => {
    const first = await openStream(`${server.url}/bounded/full`);
    const run = await runOf('full').promise;
    for (let i = 1; i <= 1000; i += 1) run.push({ n: i });
    await run.close();
    await first.ended;

    const read = await store.read('run:full', 0, 10_000);
    expect(read.events).toHaveLength(100);
    expect(read.missed).toBe(900);
    expect(read.events[0]!.seq).toBe(901);

    const late = await openStream(`${server.url}/bounded/full`);
    await late.ended;
    const data = late.events.map((event) => event.data);
    expect(data[0]).toBe('{"type":"missed","count":900}');
    expect(data.slice(1, -1)).toEqual(Array.from({ length: 100 }, (_, i) => `{"n":${i + 901}}`));
    expect(data.at(-1)).toBe('[DONE]');

    // The first client was following live: the burst reached the store in chunks its feed read in turn, so it got
    // all 1,000 although the store keeps 100.
    expect(first.events.map((event) => event.data)).toEqual([...Array.from({ length: 1000 }, (_, i) => `{"n":${i + 1}}`), '[DONE]']);
    const runId = late.events[1]!.id!.split('.')[0];
    const fromMiddle = await openStream(`${server.url}/bounded/full`, { headers: { 'Last-Event-ID': `${runId}.950` } });
    await fromMiddle.ended;
    expect(fromMiddle.events[0]!.data).toBe('{"n":951}');
    expect(fromMiddle.events).toHaveLength(51);
  });

  test('a run past its ttl is stopped: the route sees its signal abort, clients get an error event, then done', async () => {
    timers.enable();
    timers.tracking = true;
    const client = await openStream(`${server.url}/short/slow`);
    const run = await runOf('slow').promise;
    run.push('started');
    const aborted = new Promise((resolve) => run.signal.addEventListener('abort', resolve));
    await aborted;
    expect(run.closeReason).toBe('expired');
    expect(run.push('too late')).toBe(false);
    await client.ended;
    expect(client.events.map((event) => event.data)).toEqual([
      'started',
      '{"type":"error","message":"The run took longer than its time limit and was stopped"}',
      '[DONE]',
    ]);
    // Kept for ttl after it ended, then forgotten, leaving no timer behind.
    expect(shortStore.size).toBe(1);
    await eventually(() => shortStore.size === 0, 3000, 'the ended run to expire');
    expect((await shortStore.read('run:slow', 0, 1)).runId).toBeUndefined();
    timers.tracking = false;
    // Node's own short timers (a socket's, the Date header cache) clear themselves; a stream's or feed's would not.
    await eventually(() => timers.live.size === 0, 3000, 'every timer to be cleared').catch(() => undefined);
    expect(timers.live.size).toBe(0);
    timers.disable();
  });

  test('a client that reads slowly is served at its own pace: nothing dropped, nothing lost', async () => {
    const client = await openStream(`${server.url}/plain/slow-reader`, { paused: true });
    const run = await runOf('slow-reader').promise;
    const line = 'x'.repeat(1000);
    // 4 MB of events against a 64 KiB maxBuffer: a plain stream would overflow; a follower reads from the store.
    for (let i = 1; i <= 4000; i += 1) expect(run.push(`${i} ${line}`)).toBe(true);
    await delay(50);
    client.resume();
    await run.close();
    await client.ended;
    const numbers = client.events.map((event) => event.data.split(' ')[0]);
    expect(numbers).toEqual([...Array.from({ length: 4000 }, (_, i) => String(i + 1)), '[DONE]']);
  });

  test('a store full at maxEvents keeps memory bounded: 100 MB appended, about maxEvents events held', async () => {
    const bounded = new MemoryStore();
    const { runId } = await bounded.open('memory', { ttl: 60_000, lease: 5000, maxEvents: 1000 });
    const body = `data: ${'m'.repeat(1000)}\n\n`;
    await collectGarbage();
    const before = process.memoryUsage().heapUsed;
    for (let batch = 0; batch < 1000; batch += 1) {
      // Each batch a fresh copy of the text, as real events are: a string shared by all would hide the growth.
      await bounded.append('memory', runId, Array.from({ length: 100 }, (_, i) => body.replace('m', String(i % 10))));
    }
    await collectGarbage();
    const growth = process.memoryUsage().heapUsed - before;
    const read = await bounded.read('memory', 0, 5000);
    expect(read.tail).toBe(100_000);
    expect(read.events).toHaveLength(1000);
    expect(read.missed).toBe(99_000);
    console.log(`MemoryStore, maxEvents 1000: 100,000 events of 1 KB appended, heap +${(growth / MIB).toFixed(2)} MiB after GC`);
    // The 1,000 kept frames are about 1 MB; everything appended is 100 MB.
    expect(growth).toBeLessThan(16 * MIB);
  });
});

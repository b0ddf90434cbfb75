/**
 * When the store misbehaves: a read that fails now and then is retried; one that keeps failing ends the client's
 * stream with an error event but without `done`, so the browser comes back; a slow client reads each event from
 * the store once; a run the store ended behind the route's back closes as `'aborted'`.
 */
import express from 'express';
import { MemoryStore, sseStream, type ResumeStore, type SseStream } from '../../lib';
import { Turns, type Deferred } from '../helpers/deferred';
import { listen, openStream, type TestServer } from '../helpers/sse-client';
import { wrapStore } from '../helpers/stores';

/** A real MemoryStore behind a switch that makes its reads fail, and a count of the events it read out. */
function flakyStore(): { store: ResumeStore; inner: MemoryStore; failReads: (times: number) => void; eventsRead: () => number; failed: () => number } {
  const inner = new MemoryStore();
  let failing = 0;
  let failed = 0;
  let eventsRead = 0;
  const store = wrapStore(inner, {
    async read(key, after, limit) {
      if (failing > 0) {
        failing -= 1;
        failed += 1;
        throw new Error('connection reset');
      }
      const read = await inner.read(key, after, limit);
      eventsRead += read.events.length;
      return read;
    },
  });
  return { store, inner, failReads: (times) => (failing = times), eventsRead: () => eventsRead, failed: () => failed };
}

describe('resumable streams when the store fails', () => {
  let server: TestServer;
  const flaky = flakyStore();
  const runs = new Turns<string, SseStream>();
  const runOf = (key: string): Deferred<SseStream> => runs.get(key);

  beforeAll(async () => {
    const app = express();
    app.get(
      '/runs/:key',
      sseStream({ done: '[DONE]', heartbeat: 0, highWaterMark: 1000, resume: { key: (req) => String(req.params.key), store: flaky.store, lease: 200 } }),
      (req, res) => runOf(String(req.params.key)).resolve(res.sse),
    );
    server = await listen(app);
  });
  afterAll(async () => {
    await server.close();
  });

  test('a read that fails twice is retried: the client gets every event', async () => {
    const client = await openStream(`${server.url}/runs/retried`);
    const run = await runOf('retried').promise;
    await run.send('one');
    await client.waitForCount(1);
    const failedBefore = flaky.failed();
    flaky.failReads(2);
    await run.send('two');
    await run.close();
    await client.ended;
    expect(client.events.map((event) => event.data)).toEqual(['one', 'two', '[DONE]']);
    expect(flaky.failed() - failedBefore).toBe(2);
  });

  test('a store that keeps failing ends the stream with an error event and no done, so EventSource comes back and resumes', async () => {
    const client = await openStream(`${server.url}/runs/broken`);
    const run = await runOf('broken').promise;
    await run.send('before');
    await client.waitForCount(1);
    flaky.failReads(1000);
    await run.send('during');
    await client.ended;
    flaky.failReads(0);
    expect(client.events.map((event) => event.data)).toEqual(['before', '{"type":"error","message":"The stream is temporarily unavailable"}']);
    expect(run.closed).toBe(false);

    // The store is back: the browser's reconnection resumes after the last id it saw.
    const back = await openStream(`${server.url}/runs/broken`, { headers: { 'Last-Event-ID': client.events[0]!.id! } });
    await back.waitForCount(1);
    await run.close();
    await back.ended;
    expect(back.events.map((event) => event.data)).toEqual(['during', '[DONE]']);
  });

  test('a client slower than highWaterMark is served each event once from the store, not one read per event', async () => {
    const client = await openStream(`${server.url}/runs/slow`, { paused: true });
    const run = await runOf('slow').promise;
    const before = flaky.eventsRead();
    const text = 'z'.repeat(2000);
    for (let i = 1; i <= 2000; i += 1) run.push(`${i} ${text}`);
    await run.close();
    client.resume();
    await client.ended;
    expect(client.events).toHaveLength(2001);
    const read = flaky.eventsRead() - before;
    console.log(`2,000 events of 2 KB to a client with highWaterMark 1000: ${read} events read from the store`);
    // Each event once, and at most a batch again at the seam where the client joins the live feed.
    expect(read).toBeLessThan(2000 + 2 * 256);
  });

  test("a store of the app's own whose watch() throws instead of rejecting: the client is told, nothing crashes", async () => {
    const inner = new MemoryStore();
    const throwing = wrapStore(inner, {
      watch() {
        throw new Error('watch is not supported');
      },
    });
    // Jest's sandboxed `process` does not receive the real 'warning' event: the call itself is observed.
    const emitWarning = jest.spyOn(process, 'emitWarning');
    const app = express();
    app.get('/run', sseStream({ done: '[DONE]', heartbeat: 0, resume: { key: () => 'watchless', store: throwing } }), (_req, res) => {
      res.sse.push('produced');
    });
    const local = await listen(app);
    try {
      const client = await openStream(`${local.url}/run`);
      await client.ended;
      expect(client.events.map((event) => event.data)).toEqual(['{"type":"error","message":"The stream is temporarily unavailable"}']);
      expect(emitWarning.mock.calls.map(([warning]) => String(warning))).toContain(
        "express-sse-context: the resume store's watch() failed: watch is not supported",
      );
      // The run went on: it is in the store for when the client comes back.
      expect((await inner.read('run:watchless', 0, 10)).events).toHaveLength(1);
    } finally {
      emitWarning.mockRestore();
      await local.close();
    }
  });

  test('a run the store ended behind its back (an abort, a lapsed lease) closes as aborted', async () => {
    const client = await openStream(`${server.url}/runs/ended`);
    const run = await runOf('ended').promise;
    await run.send('stored');
    expect(await flaky.inner.abort('run:ended')).toBe(true);
    await run.close();
    expect(run.closeReason).toBe('aborted');
    expect(run.signal.aborted).toBe(true);
    await client.ended;
    expect(client.events.map((event) => event.data)).toEqual(['stored', '[DONE]']);
  });
});

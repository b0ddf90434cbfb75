/**
 * A flood of distinct keys against the default store (the process-wide `MemoryStore`, default bounds: 10,000 runs,
 * 64 MiB) under the default `ttl` (10 minutes, so nothing expires during the test): 20,000 short runs (3 small
 * events each, then `close()`, read to the end by their client) and, among them, 2,000 abandoned ones (the client
 * leaves after the first event; the route goes on, so the run stays live). Everything goes through a real server on
 * loopback, 64 requests at a time, each on its own connection (about 25 s on 2 cores). The heap is measured after
 * GC twice: with the abandoned routes still running (each holds its request and response), and once they ended.
 * Unbounded (before `maxRuns`), the store held all 22,000 runs: heap +64 MiB, then +39 MiB, growing with every new
 * key; bounded, it holds the 2,000 live runs and the 8,000 that ended last: about +44 MiB, then +20 MiB, for any
 * number of keys.
 */
import express from 'express';
import { sseStream } from '../../lib';
import type { MemoryStore } from '../../lib/store/memory';
import { defaultStore } from '../../lib/store/default';
import { deferred } from '../helpers/deferred';
import { eventually, listen, openStream, type TestServer } from '../helpers/sse-client';
import { collectGarbage, MIB, mib } from './support';

const SHORT = 20_000;
const ABANDONED = 2_000;
/** Requests in flight at once. */
const CONCURRENCY = 64;

describe('a flood of distinct keys on the default memory store', () => {
  let server: TestServer;
  const store = defaultStore as MemoryStore;
  /** Lets the abandoned runs' routes finish, once the figures are taken. */
  const release = deferred();
  const failures: unknown[] = [];
  const onFailure = (error: unknown): void => void failures.push(error);

  beforeAll(async () => {
    process.on('unhandledRejection', onFailure);
    process.on('uncaughtException', onFailure);
    const app = express();
    const resume = { key: (req: express.Request) => String(req.params.id) };
    app.get('/short/:id', sseStream({ heartbeat: 0, resume }), async (_req, res) => {
      for (let i = 0; i < 3; i += 1) await res.sse.send({ i, text: 'short run event' });
      await res.sse.close();
    });
    app.get('/abandoned/:id', sseStream({ heartbeat: 0, resume }), async (_req, res) => {
      await res.sse.send({ step: 'started' });
      // Still working after its client left, as a model call goes on after the tab closed.
      await release.promise;
      await res.sse.close();
    });
    server = await listen(app);
  });
  afterAll(async () => {
    release.resolve();
    await server.close();
    process.off('unhandledRejection', onFailure);
    process.off('uncaughtException', onFailure);
  });

  /** Request `i` of the flood: every eleventh is abandoned, so the abandoned runs are spread through it. */
  const request = async (i: number): Promise<void> => {
    if (i % 11 === 10) {
      const client = await openStream(`${server.url}/abandoned/flood-${i}`);
      await client.waitForCount(1);
      client.abort();
      await client.ended;
      return;
    }
    const client = await openStream(`${server.url}/short/flood-${i}`);
    await client.ended;
    if (client.events.length !== 3) throw new Error(`request ${i}: ${client.status}, ${client.events.length} events`);
  };

  it('holds at most maxRuns runs, keeps every live one, and bounds the heap', async () => {
    const total = SHORT + ABANDONED;
    await collectGarbage();
    const before = process.memoryUsage().heapUsed;
    const started = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < total) await request(next++);
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    // Let the last responses' 'close' settle.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await collectGarbage(4);
    const growth = process.memoryUsage().heapUsed - before;
    const held = { runs: store.size, bytes: store.bytes };

    // The abandoned runs are live: none was evicted. The newest short run is kept; the oldest was evicted.
    const abandoned = Array.from({ length: total }, (_, i) => i).filter((i) => i % 11 === 10);
    expect(abandoned).toHaveLength(ABANDONED);
    const endOf = async (i: number) => (await store.read(`run:flood-${i}`, Number.MAX_SAFE_INTEGER, 1)).end;
    const ends = await Promise.all(abandoned.map(async (i) => ((await store.read(`run:flood-${i}`, 0, 1)).runId === undefined ? 'gone' : endOf(i))));
    expect(ends.filter((end) => end === undefined)).toHaveLength(ABANDONED);
    expect(await endOf(total - 2)).toBe('done');
    expect((await store.read('run:flood-0', 0, 1)).runId).toBeUndefined();

    // Once the abandoned routes finish, what is left is the store's: 10,000 ended runs.
    release.resolve();
    await eventually(async () => (await Promise.all(abandoned.map(endOf))).every((end) => end === 'done'), 10_000, 'the abandoned runs to end');
    await new Promise((resolve) => setTimeout(resolve, 50));
    await collectGarbage(4);
    const ended = process.memoryUsage().heapUsed - before;
    console.log(
      `memory store flood: ${SHORT} short runs + ${ABANDONED} abandoned in ${seconds.toFixed(1)} s; ` +
        `${held.runs} runs held, ${held.bytes} characters (${mib(held.bytes)}), heap +${mib(growth)} after GC ` +
        `with the abandoned routes still running, +${mib(ended)} once they ended (${store.size} runs, ${mib(store.bytes)})`,
    );
    expect(failures).toEqual([]);
    expect(held.runs).toBeLessThanOrEqual(10_000);
    expect(store.size).toBeLessThanOrEqual(10_000);
    // 10,000 ended runs held about 20 MiB (mostly each run's own objects and timer; their text is under 2 MiB);
    // the 22,000 of the unbounded store held 39 MiB.
    expect(ended).toBeLessThan(30 * MIB);
  }, 120_000);
});

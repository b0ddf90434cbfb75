/**
 * Nothing the library schedules for itself keeps a finished request alive: 100 resumable runs (3 events each, then
 * `close()`) finish while their events stay in the store for its `ttl` (10 minutes). After a full GC, the route's
 * `res.sse` objects (the runs) and the followers' response streams must be unreachable: the store's expiry timer,
 * created when a run ends (inside the route's async context), must not hold the context, and through it `res.sse`.
 */
import express from 'express';
import { sseStream, type SseStream } from '../../lib';
import { MemoryStore } from '../../lib/store/memory';
import { listen, openStream, type TestServer } from '../helpers/sse-client';
import { collectGarbage } from './support';

const RUNS = 100;

describe('finished resumable runs', () => {
  let server: TestServer;
  const store = new MemoryStore();
  const runs: Array<WeakRef<SseStream>> = [];
  const responses: Array<WeakRef<object>> = [];
  const failures: unknown[] = [];
  const onFailure = (error: unknown): void => void failures.push(error);

  beforeAll(async () => {
    process.on('unhandledRejection', onFailure);
    process.on('uncaughtException', onFailure);
    const app = express();
    app.get(
      '/runs/:id',
      (_req, res, next) => {
        res.once('close', () => responses.push(new WeakRef(res)));
        next();
      },
      sseStream({ heartbeat: 1000, resume: { key: (req) => req.params.id as string, store } }),
      async (_req, res) => {
        runs.push(new WeakRef(res.sse));
        for (let i = 0; i < 3; i += 1) await res.sse.send({ i, text: 'x'.repeat(200) });
        await res.sse.close();
      },
    );
    server = await listen(app);
  });
  afterAll(async () => {
    await server.close();
    process.off('unhandledRejection', onFailure);
    process.off('uncaughtException', onFailure);
  });

  it('leaves ~0 of 100 res.sse objects reachable after GC, while their runs are still stored', async () => {
    for (let i = 0; i < RUNS; i += 1) {
      const client = await openStream(`${server.url}/runs/gc-${i}`);
      await client.ended;
      expect(client.events).toHaveLength(3);
    }
    // Let every response's 'close' and the runs' ends settle.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await collectGarbage(4);
    const reachableRuns = runs.filter((ref) => ref.deref() !== undefined).length;
    const reachableResponses = responses.filter((ref) => ref.deref() !== undefined).length;
    console.log(
      `finished runs: ${reachableRuns} of ${runs.length} res.sse objects and ${reachableResponses} of ${responses.length} ` +
        `responses reachable after GC; ${store.size} runs still in the store (ttl 10 min)`,
    );
    expect(failures).toEqual([]);
    expect(runs).toHaveLength(RUNS);
    expect(store.size).toBe(RUNS);
    // A handful may be held by the last request's sockets or by V8 caches; 100 of 100 is the leak.
    expect(reachableRuns).toBeLessThanOrEqual(3);
    expect(reachableResponses).toBeLessThanOrEqual(3);
  });
});

/**
 * Observability: `openStreamCount()` counts the open streams, and `sseStream({ onClose })` reports each stream's close
 * reason, lifetime, events and bytes, which match what the client received.
 */
import express from 'express';
import { openStreamCount, sseStream, type StreamSummary } from '../lib';
import { deferred, type Deferred } from './helpers/deferred';
import { eventually, listen, openStream, type TestServer } from './helpers/sse-client';

describe('openStreamCount() and onClose', () => {
  let server: TestServer;
  const summaries: Array<{ summary: StreamSummary; path: string }> = [];
  let held: Deferred<express.Response> = deferred();

  beforeAll(async () => {
    const app = express();
    const onClose = (summary: StreamSummary, req: express.Request): void => void summaries.push({ summary, path: req.path });
    app.get('/finite', sseStream({ heartbeat: 0, done: '[DONE]', onClose }), (_req, res) => {
      for (let i = 0; i < 25; i += 1) res.sse.push({ i, text: 'héllo wörld' });
      res.sse.comment('not an event');
      void res.sse.close();
    });
    app.get('/held', sseStream({ heartbeat: 0, onClose }), (_req, res) => {
      res.sse.push('first');
      held.resolve(res);
    });
    app.get('/throwing-hook', sseStream({ heartbeat: 0, onClose: () => { throw new Error('metrics down'); } }), (_req, res) => {
      void res.sse.close();
    });
    server = await listen(app);
  });
  afterAll(() => server.close());
  beforeEach(() => {
    summaries.length = 0;
    held = deferred();
  });

  it('reports a closed stream: reason, events, and exactly the bytes the client received', async () => {
    const client = await openStream(`${server.url}/finite`);
    await client.ended;
    await eventually(() => summaries.length === 1, 5000, 'onClose');
    const [{ summary, path }] = summaries;
    expect(path).toBe('/finite');
    expect(summary.reason).toBe('close');
    expect(summary.events).toBe(25);
    expect(client.events).toHaveLength(26); // the 25 events and [DONE]
    expect(summary.bytes).toBe(Buffer.byteLength(client.raw()));
    expect(summary.duration).toBeGreaterThanOrEqual(0);
  });

  it('counts open streams, and reports a disconnect', async () => {
    const before = openStreamCount();
    const client = await openStream(`${server.url}/held`);
    const res = await held.promise;
    await client.waitForEvent();
    expect(openStreamCount()).toBe(before + 1);
    res.sse.push('second');
    await client.waitForCount(2);
    client.abort();
    await eventually(() => summaries.length === 1, 5000, 'onClose');
    expect(summaries[0].summary).toMatchObject({ reason: 'disconnect', events: 2 });
    expect(summaries[0].summary.bytes).toBe(Buffer.byteLength(client.raw()));
    expect(openStreamCount()).toBe(before);
  });

  it('turns an exception in the hook into a process warning; the server goes on', async () => {
    // Jest's sandboxed `process` does not receive the real 'warning' event, so the call itself is observed (the real
    // emitWarning still runs).
    const emitWarning = jest.spyOn(process, 'emitWarning');
    try {
      const client = await openStream(`${server.url}/throwing-hook`);
      await client.ended;
      await eventually(() => emitWarning.mock.calls.some(([warning]) => String(warning).includes('metrics down')), 5000, 'the warning');
      const next = await openStream(`${server.url}/finite`);
      await next.ended;
      expect(next.events).toHaveLength(26);
    } finally {
      emitWarning.mockRestore();
    }
  });

  it('rejects an onClose that is not a function', () => {
    expect(() => sseStream({ onClose: 'log' as unknown as () => void })).toThrow(/onClose/);
  });
});

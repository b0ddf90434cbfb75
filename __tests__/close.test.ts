import express from 'express';
import { sseStream } from '../lib';
import { deferred, pushUntilResponseFull } from './helpers/deferred';
import { listen, openStream, type TestServer } from './helpers/sse-client';

/** What a route saw of its own stream, recorded for the test to check. */
interface Observed {
  pushAfterClose?: boolean;
  sendAfterClose?: boolean;
  beforeClose?: { closed: boolean; closeReason: string | undefined; aborted: boolean };
  afterClose?: { closed: boolean; closeReason: string | undefined; aborted: boolean; reason: unknown };
  thrownByThrowIfAborted?: unknown;
  abortEvents: number;
  sameCloseCall?: boolean;
  closeCallsSettled?: number;
}

describe('close()', () => {
  let server: TestServer;
  const flushRoute = deferred<express.Response>();
  const stalledRoute = deferred<express.Response>();
  let observed: Observed = { abortEvents: 0 };
  const lastEventIds = new Map<string, { header: string | undefined; lastEventId: string | undefined }>();
  const closeErrors: unknown[] = [];

  beforeAll(async () => {
    const app = express();
    // The test drives this one: it pushes while the client is not reading, then closes.
    app.get('/flush', sseStream({ done: '[DONE]', heartbeat: 0, maxBuffer: 64 * 1024 * 1024 }), (_req, res) => {
      flushRoute.resolve(res);
    });
    app.get('/stalled', sseStream({ done: '[DONE]', heartbeat: 50, maxBuffer: 64 * 1024 * 1024 }), (_req, res) => {
      stalledRoute.resolve(res);
    });
    app.get('/twice', sseStream({ done: '[DONE]', heartbeat: 0 }), async (_req, res) => {
      res.sse.push('a');
      const first = res.sse.close();
      const second = res.sse.close();
      observed.sameCloseCall = first === second;
      let settled = 0;
      await Promise.all([first.then(() => (settled += 1)), second.then(() => (settled += 1))]).catch((error: unknown) => closeErrors.push(error));
      // A third call, after the response has finished, settles as well and sends nothing.
      await res.sse.close().then(() => (settled += 1), (error: unknown) => closeErrors.push(error));
      observed.closeCallsSettled = settled;
    });
    app.get('/after-close', sseStream({ done: '[DONE]', heartbeat: 0 }), async (_req, res) => {
      const { sse } = res;
      observed = { abortEvents: 0 };
      sse.signal.addEventListener('abort', () => (observed.abortEvents += 1));
      observed.beforeClose = { closed: sse.closed, closeReason: sse.closeReason, aborted: sse.signal.aborted };
      sse.push('before');
      const closing = sse.close();
      observed.pushAfterClose = sse.push('after-push');
      observed.sendAfterClose = await sse.send('after-send');
      sse.comment('after-comment');
      observed.afterClose = { closed: sse.closed, closeReason: sse.closeReason, aborted: sse.signal.aborted, reason: sse.signal.reason };
      try {
        sse.signal.throwIfAborted();
      } catch (error) {
        observed.thrownByThrowIfAborted = error;
      }
      await closing.catch((error: unknown) => closeErrors.push(error));
    });
    app.get('/last-id/:key', sseStream({ heartbeat: 0 }), (req, res) => {
      lastEventIds.set(req.params.key as string, { header: req.get('Last-Event-ID'), lastEventId: res.sse.lastEventId });
      res.sse.push({ lastEventId: res.sse.lastEventId ?? null });
      void res.sse.close();
    });
    server = await listen(app);
  });
  afterAll(() => server.close());

  it('flushes every queued event, then sends the done data as the last event, then ends the response', async () => {
    const client = await openStream(`${server.url}/flush`, { paused: true });
    const res = await flushRoute.promise;
    const payload = 'x'.repeat(1000);
    // The client reads nothing: the response fills up...
    const written = await pushUntilResponseFull(res, (i) => `${i} ${payload}`);
    // ...and these wait in the stream for a 'drain' that never comes before close().
    const count = written + 1500;
    for (let i = written; i < count; i += 1) expect(res.sse.push(`${i} ${payload}`)).toBe(true);

    const closing = res.sse.close();
    expect(res.sse.closed).toBe(true);
    expect(res.sse.closeReason).toBe('close');
    client.resume();
    await closing;
    await client.ended;

    expect(client.response.complete).toBe(true);
    expect(client.events).toHaveLength(count + 1);
    client.events.slice(0, count).forEach((event, i) => expect(event.data).toBe(`${i} ${payload}`));
    expect(client.events[count]?.data).toBe('[DONE]');
    expect(client.raw().endsWith('data: [DONE]\n\n')).toBe(true);
    expect(res.sse.closeReason).toBe('close');
  });

  it('does not wait forever for a client that never reads again: it is dropped after a heartbeat period without progress', async () => {
    const client = await openStream(`${server.url}/stalled`, { paused: true });
    const res = await stalledRoute.promise;
    await pushUntilResponseFull(res, (i) => `${i} ${'y'.repeat(1000)}`);
    let settled = false;
    const closing = res.sse.close().then(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(settled).toBe(false);
    // The client never reads again: close() settles only because the stalled connection was dropped.
    await closing;
    expect(res.sse.closeReason).toBe('close');
    expect(res.destroyed).toBe(true);
    expect(client.response.complete).toBe(false);
    client.abort();
  });

  it('can be called twice (and again after it finished): every call settles and done is sent once', async () => {
    const client = await openStream(`${server.url}/twice`);
    await client.ended;
    await eventuallyDefined(() => observed.closeCallsSettled);
    expect(closeErrors).toEqual([]);
    expect(observed.closeCallsSettled).toBe(3);
    expect(observed.sameCloseCall).toBe(true);
    expect(client.events.map((event) => event.data)).toEqual(['a', '[DONE]']);
    expect(client.raw().split('[DONE]')).toHaveLength(2);
    expect(client.response.complete).toBe(true);
  });

  it('after close(): push returns false, send resolves false, comment writes nothing, and the stream reports closed', async () => {
    const client = await openStream(`${server.url}/after-close`);
    await client.ended;
    await eventuallyDefined(() => observed.afterClose);

    expect(observed.beforeClose).toEqual({ closed: false, closeReason: undefined, aborted: false });
    expect(observed.pushAfterClose).toBe(false);
    expect(observed.sendAfterClose).toBe(false);
    expect(client.events.map((event) => event.data)).toEqual(['before', '[DONE]']);
    expect(client.raw()).not.toContain('after');
    expect(client.comments).toEqual([]);
    expect(observed.afterClose).toMatchObject({ closed: true, closeReason: 'close', aborted: true });
    expect(closeErrors).toEqual([]);
  });

  it('aborts the signal on close(), once, with a DOMException named AbortError', async () => {
    observed = { abortEvents: 0 };
    const client = await openStream(`${server.url}/after-close`);
    await client.ended;
    await eventuallyDefined(() => observed.afterClose);
    expect(observed.afterClose?.aborted).toBe(true);
    const reason = observed.afterClose?.reason;
    expect(reason).toBeInstanceOf(DOMException);
    expect((reason as DOMException).name).toBe('AbortError');
    expect(observed.thrownByThrowIfAborted).toBe(reason);
    expect(observed.abortEvents).toBe(1);
  });

  it.each([
    ['present', { 'Last-Event-ID': '42' }, '42', '42'],
    ['present, not a number', { 'Last-Event-ID': 'evt-7:abc' }, 'evt-7:abc', 'evt-7:abc'],
    ['absent', {}, undefined, undefined],
    ['empty', { 'Last-Event-ID': '' }, '', undefined],
  ] as const)('lastEventId reflects the Last-Event-ID header (%s)', async (key, headers, header, expected) => {
    const client = await openStream(`${server.url}/last-id/${encodeURIComponent(key)}`, { headers });
    await client.ended;
    // The request really carried (or lacked) the header as intended.
    expect(lastEventIds.get(key)?.header).toBe(header);
    expect(lastEventIds.get(key)?.lastEventId).toBe(expected);
    expect(JSON.parse(client.events[0]?.data ?? 'false')).toEqual({ lastEventId: expected ?? null });
  });
});

/** Waits until the route has recorded `value()` (the route may still be finishing after the client saw the end). */
async function eventuallyDefined(value: () => unknown): Promise<void> {
  for (let i = 0; i < 1000 && value() === undefined; i += 1) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(value()).toBeDefined();
}

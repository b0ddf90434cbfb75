import http from 'node:http';
import express from 'express';
import { sseStream } from '../lib';
import { deferred, pushUntilResponseFull, type Deferred } from './helpers/deferred';
import { TimeoutTracker } from './helpers/timers';
import { delay, eventually, listen, openStream, type TestServer } from './helpers/sse-client';

/**
 * The process's active `Timeout`s as Node reports them. Node counts only ref'd timers here, and the stream `unref()`s
 * its heartbeat (so it never keeps a process alive), so this count cannot see the heartbeat itself: it guards against
 * any other timer left behind, and `TimeoutTracker` (async_hooks init/destroy of every Timeout created inside
 * `sseStream()`) is what proves the heartbeat interval was cleared.
 */
const activeTimeouts = (): number => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;

interface Producer {
  res: express.Response;
  sent: number;
  inSend: boolean;
  /** What the last `send()` resolved to, once the loop stopped. */
  stopped: Deferred<boolean>;
  abortReason: Deferred<unknown>;
}

describe('client disconnect', () => {
  let server: TestServer;
  const timers = new TimeoutTracker();
  let producer = deferred<Producer>();
  const endedByRoute = deferred<{ pushAfterEnd: boolean; sendAfterEnd: boolean; res: express.Response }>();
  const endedWhileBehind = deferred<express.Response>();
  const slowAuth = {
    entered: deferred(),
    release: deferred(),
    route: deferred<{ closed: boolean; closeReason: string | undefined; aborted: boolean; pushed: boolean }>(),
  };
  const responseErrors: unknown[] = [];
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown): void => void uncaught.push(error);

  beforeAll(async () => {
    process.on('uncaughtException', onUncaught);
    timers.enable();
    const app = express();
    // Everything between these two handlers runs inside sseStream(): the stream's heartbeat timer is created there.
    const trackFrom: express.RequestHandler = (_req, _res, next) => {
      timers.tracking = true;
      next();
    };
    const produce =
      (pace: boolean): express.RequestHandler =>
      (_req, res) => {
        timers.tracking = false;
        const state: Producer = { res, sent: 0, inSend: false, stopped: deferred<boolean>(), abortReason: deferred<unknown>() };
        res.sse.signal.addEventListener('abort', () => state.abortReason.resolve(res.sse.signal.reason));
        producer.resolve(state);
        void (async () => {
          const filler = 'z'.repeat(1000);
          for (;;) {
            state.inSend = true;
            const ok = await res.sse.send({ n: state.sent, filler });
            state.inSend = false;
            if (!ok) return state.stopped.resolve(false);
            state.sent += 1;
            if (pace) await delay(2);
          }
        })();
      };
    app.get('/paced', trackFrom, sseStream({ heartbeat: 20 }), produce(true));
    app.get('/flood', trackFrom, sseStream({ heartbeat: 20, highWaterMark: 16 * 1024 }), produce(false));
    app.get('/route-ends', sseStream({ heartbeat: 10 }), (_req, res) => {
      res.on('error', (error) => responseErrors.push(error));
      res.sse.push('before');
      res.end();
      const pushAfterEnd = res.sse.push('after');
      void res.sse.send('after-send').then((sendAfterEnd) => endedByRoute.resolve({ pushAfterEnd, sendAfterEnd, res }));
    });
    app.get('/route-ends-behind', sseStream({ heartbeat: 10, maxBuffer: 64 * 1024 * 1024 }), (_req, res) => {
      res.on('error', (error) => responseErrors.push(error));
      endedWhileBehind.resolve(res);
    });
    // An earlier middleware that awaits (auth, a session store) while the client gives up.
    app.get(
      '/slow-auth',
      async (_req, _res, next) => {
        slowAuth.entered.resolve();
        await slowAuth.release.promise;
        next();
      },
      trackFrom,
      sseStream({ heartbeat: 20 }),
      (_req, res) => {
        timers.tracking = false;
        slowAuth.route.resolve({ closed: res.sse.closed, closeReason: res.sse.closeReason, aborted: res.sse.signal.aborted, pushed: res.sse.push('x') });
      },
    );
    server = await listen(app);
  });
  afterAll(async () => {
    timers.disable();
    process.off('uncaughtException', onUncaught);
    await server.close();
  });
  beforeEach(() => {
    producer = deferred<Producer>();
    timers.created = 0;
    timers.live.clear();
  });

  it('aborts the signal, closes the stream as "disconnect", stops the heartbeat and the send() loop', async () => {
    const baseline = activeTimeouts();
    const client = await openStream(`${server.url}/paced`);
    const state = await producer.promise;
    // The stream is live: events flow and the heartbeat beats.
    await client.waitForCount(5);
    await eventually(() => client.comments.length >= 2, 5000, 'two heartbeats');
    expect(state.res.sse.closed).toBe(false);
    // The heartbeat is a timer this stream created and has not cleared.
    expect(timers.created).toBeGreaterThanOrEqual(1);
    expect(timers.live.size).toBe(timers.created);

    client.abort();

    const reason = await state.abortReason.promise;
    expect(state.res.sse.signal.aborted).toBe(true);
    expect(reason).toBeInstanceOf(DOMException);
    expect((reason as DOMException).name).toBe('AbortError');
    expect(state.res.sse.closed).toBe(true);
    expect(state.res.sse.closeReason).toBe('disconnect');
    expect(state.res.sse.push('late')).toBe(false);
    await expect(state.res.sse.send('late')).resolves.toBe(false);
    // The producer's own send() told it to stop.
    await expect(state.stopped.promise).resolves.toBe(false);
    const sentAtStop = state.sent;

    // Every timer the stream created is cleared: the heartbeat interval no longer exists.
    await eventually(() => timers.live.size === 0, 5000, 'the heartbeat timer to be cleared');
    // And the process's ref'd timers are back to where they were before the stream opened.
    await eventually(() => activeTimeouts() <= baseline, 5000, `active Timeouts back to ${baseline}`);
    expect(state.sent).toBe(sentAtStop);
  });

  it('a client that left while an earlier middleware awaited gets a stream that is already closed, with no timer left', async () => {
    // No headers come back before the middleware lets go, so this client gives up on a bare request.
    const request = http.get(`${server.url}/slow-auth`, { agent: false });
    request.on('error', () => undefined);
    await slowAuth.entered.promise;
    request.destroy();
    await delay(50);
    slowAuth.release.resolve();
    await expect(slowAuth.route.promise).resolves.toEqual({ closed: true, closeReason: 'disconnect', aborted: true, pushed: false });
    await eventually(() => timers.live.size === 0, 5000, 'the heartbeat timer to be cleared');
    expect(timers.created).toBeGreaterThan(0);
  });

  it('releases a producer that is waiting in send() for a client that stopped reading', async () => {
    const client = await openStream(`${server.url}/flood`, { paused: true });
    const state = await producer.promise;
    // The client reads nothing: the producer fills the buffers and then waits in send() for 'drain'.
    await eventually(() => state.inSend && state.res.writableNeedDrain, 10000, 'the producer to wait in send()');
    const sentWhileStalled = state.sent;
    for (let i = 0; i < 20; i += 1) await new Promise((resolve) => setImmediate(resolve));
    expect(state.inSend).toBe(true);
    expect(state.sent).toBe(sentWhileStalled);

    client.abort();

    await expect(state.stopped.promise).resolves.toBe(false);
    expect(state.res.sse.closeReason).toBe('disconnect');
    expect(state.sent).toBe(sentWhileStalled);
    await eventually(() => timers.live.size === 0, 5000, 'the heartbeat timer to be cleared');
  });

  it('a route that ends the response itself leaves the stream closed: push returns false, nothing throws', async () => {
    const client = await openStream(`${server.url}/route-ends`);
    await client.ended;
    const { pushAfterEnd, sendAfterEnd, res } = await endedByRoute.promise;
    expect(pushAfterEnd).toBe(false);
    expect(sendAfterEnd).toBe(false);
    expect(client.events.map((event) => event.data)).toEqual(['before']);
    expect(client.response.complete).toBe(true);
    await eventually(() => res.sse.closed && res.sse.signal.aborted, 5000, 'the stream to report closed');
    expect(res.sse.closeReason).toBe('close');
    expect(res.sse.push('later')).toBe(false);
    expect(() => res.sse.comment('later')).not.toThrow();
    // Several heartbeat periods (10 ms) go by on a stream whose response has ended.
    await delay(60);
    expect(responseErrors).toEqual([]);
    expect(uncaught).toEqual([]);
  });

  it('a route that ends the response while the client is behind: nothing pushed is lost, push returns false afterwards', async () => {
    const client = await openStream(`${server.url}/route-ends-behind`, { paused: true });
    const res = await endedWhileBehind.promise;
    const chunk = 'w'.repeat(1000);
    const written = await pushUntilResponseFull(res, (i) => `${i} ${chunk}`);
    // These wait in the stream for a 'drain'; the route's own res.end() must still send them.
    const total = written + 1500;
    for (let i = written; i < total; i += 1) res.sse.push(`${i} ${chunk}`);
    res.end();
    expect(res.sse.push('after')).toBe(false);
    client.resume();
    await client.ended;
    expect(client.events.map((event) => Number(event.data.split(' ')[0]))).toEqual(Array.from({ length: total }, (_, i) => i));
    await eventually(() => res.sse.closed, 5000, 'the stream to report closed');
    expect(res.sse.push('later')).toBe(false);
    await delay(60);
    expect(responseErrors).toEqual([]);
    expect(uncaught).toEqual([]);
    expect(client.raw()).not.toContain('after');
  });
});

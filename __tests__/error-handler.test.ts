import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import request from 'supertest';
import { sseErrorHandler, sseStream } from '../lib';
import { delay, listen, openStream, type StreamClient, type TestServer } from './helpers/sse-client';

const GENERIC = { type: 'error', message: 'Internal Server Error' };
/** Text that must never reach the client: it stands for a secret, an internal path and a 5xx's own message. */
const SECRET = 'db password hunter2 in /srv/app/internal/query.js';

/** Reads a stream to its end; fails (instead of hanging) when the server never ends it. */
async function readToEnd(url: string): Promise<StreamClient> {
  const client = await openStream(url);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_done, fail) => {
    timer = setTimeout(() => fail(new Error(`the stream never ended; received ${JSON.stringify(client.raw())}`)), 5000);
  });
  try {
    await Promise.race([client.ended, timeout]);
  } finally {
    clearTimeout(timer);
    client.abort();
  }
  return client;
}

/** Resolves once a route began its work, so the test can leave at that moment. */
function startSignal(): { started(): void; promise: Promise<void> } {
  let started!: () => void;
  const promise = new Promise<void>((resolve) => (started = resolve));
  return { started, promise };
}
const abortedWork = startSignal();
const failedAfterDisconnect = startSignal();

describe('sseErrorHandler()', () => {
  let server: TestServer;
  /** Errors that reached the error middleware mounted after sseErrorHandler(). */
  const passedOn: unknown[] = [];

  beforeAll(async () => {
    const app = express();
    app.get('/sync', sseStream({ heartbeat: 0 }), (_req, res) => {
      res.sse.push('before');
      throw new Error(SECRET);
    });
    app.get('/sync-first', sseStream({ heartbeat: 0 }), () => {
      throw new Error(SECRET);
    });
    app.get('/async', sseStream({ heartbeat: 0 }), async (_req, res) => {
      res.sse.push('before');
      await delay(10);
      throw new Error(SECRET);
    });
    app.get('/client-error', sseStream({ heartbeat: 0 }), async (_req, res) => {
      res.sse.push('before');
      await delay(1);
      throw Object.assign(new Error('Bad prompt'), { status: 400, expose: true });
    });
    app.get('/exposed-500', sseStream({ heartbeat: 0 }), () => {
      throw Object.assign(new Error(SECRET), { status: 500, expose: true });
    });
    app.get('/unexposed-400', sseStream({ heartbeat: 0 }), () => {
      throw Object.assign(new Error(SECRET), { status: 400, expose: false });
    });
    app.get('/thrown-string', sseStream({ heartbeat: 0 }), () => {
      throw SECRET;
    });
    app.get('/plain-throw', () => {
      throw new Error(SECRET);
    });
    app.get('/plain-400', () => {
      throw Object.assign(new Error('Bad prompt'), { status: 400, expose: true });
    });
    app.get('/aborted-work', sseStream({ heartbeat: 0 }), async (_req, res) => {
      abortedWork.started();
      // The work stops because the client left: the rejection is the stream's own abort.
      await sleep(60_000, undefined, { signal: res.sse.signal });
    });
    app.get('/failed-after-disconnect', sseStream({ heartbeat: 0 }), async (_req, res) => {
      failedAfterDisconnect.started();
      await new Promise((resolve) => res.sse.signal.addEventListener('abort', resolve));
      throw new Error('the database went away too');
    });
    app.get('/refusing-serializer', sseStream({ heartbeat: 0, serialize: () => { throw new Error('no objects'); } }), () => {
      throw new Error(SECRET);
    });
    app.get('/ok', (_req, res) => {
      res.send('still serving');
    });
    app.use(sseErrorHandler());
    app.use((error: unknown, _req: express.Request, _res: express.Response, next: express.NextFunction) => {
      passedOn.push(error);
      next(error);
    });
    server = await listen(app);
  });
  afterAll(() => server.close());
  beforeEach(() => {
    passedOn.length = 0;
  });

  /** The stream's last event, decoded; it must be a plain message event (no `event:` name). */
  function errorEvent(client: StreamClient): unknown {
    const last = client.events[client.events.length - 1];
    expect(last).toBeDefined();
    expect(last.event).toBeUndefined();
    return JSON.parse(last.data) as unknown;
  }

  async function expectStillServing(): Promise<void> {
    const response = await request(server.url).get('/ok');
    expect(response.status).toBe(200);
    expect(response.text).toBe('still serving');
  }

  it.each([
    ['a synchronous throw', '/sync'],
    ['an async rejection (express 5)', '/async'],
  ])('turns %s after headers are out into a plain error message event, then ends the stream', async (_name, path) => {
    const client = await readToEnd(`${server.url}${path}`);
    expect(client.status).toBe(200);
    expect(client.events).toHaveLength(2);
    expect(client.events[0]).toEqual({ event: undefined, id: undefined, data: 'before' });
    expect(errorEvent(client)).toEqual(GENERIC);
    // The response ended cleanly (not a dropped connection, which a browser would answer by reconnecting).
    expect(client.response.complete).toBe(true);
    const raw = client.raw();
    expect(raw).not.toMatch(/^event:/m);
    expect(raw).not.toContain('hunter2');
    expect(raw).not.toContain('/srv/app');
    expect(raw).not.toContain(__dirname);
    expect(raw).not.toMatch(/\bat .*:\d+/);
    expect(raw).not.toContain('stack');
    // The error was handled, not passed on.
    expect(passedOn).toEqual([]);
    await expectStillServing();
  });

  it("treats the work's own abort after the client left as expected: not passed on to be logged", async () => {
    const client = await openStream(`${server.url}/aborted-work`);
    await abortedWork.promise;
    client.abort();
    await delay(100);
    expect(passedOn).toEqual([]);
    await expectStillServing();
  });

  it('passes any other error after the client left on to next(err)', async () => {
    const client = await openStream(`${server.url}/failed-after-disconnect`);
    await failedAfterDisconnect.promise;
    client.abort();
    const deadline = Date.now() + 5000;
    while (passedOn.length === 0 && Date.now() < deadline) await delay(10);
    expect(passedOn).toHaveLength(1);
    expect((passedOn[0] as Error).message).toBe('the database went away too');
    await expectStillServing();
  });

  it('still ends the stream cleanly when a custom serializer refuses the error event', async () => {
    const client = await readToEnd(`${server.url}/refusing-serializer`);
    expect(client.response.complete).toBe(true);
    expect(client.raw()).not.toContain('hunter2');
    expect(passedOn).toEqual([]);
    await expectStillServing();
  });

  it('handles a throw before anything was pushed', async () => {
    const client = await readToEnd(`${server.url}/sync-first`);
    expect(client.events).toHaveLength(1);
    expect(errorEvent(client)).toEqual(GENERIC);
    expect(client.response.complete).toBe(true);
    await expectStillServing();
  });

  it("sends an exposed client error's own message", async () => {
    const client = await readToEnd(`${server.url}/client-error`);
    expect(client.events.map((event) => event.data)).toEqual(['before', JSON.stringify({ type: 'error', message: 'Bad prompt' })]);
    expect(errorEvent(client)).toEqual({ type: 'error', message: 'Bad prompt' });
    expect(client.response.complete).toBe(true);
    await expectStillServing();
  });

  it.each([
    ['a 500 with expose: true', '/exposed-500'],
    ['a 400 with expose: false', '/unexposed-400'],
    ['a thrown string', '/thrown-string'],
  ])('sends the generic message for %s', async (_name, path) => {
    const client = await readToEnd(`${server.url}${path}`);
    expect(client.events).toHaveLength(1);
    expect(errorEvent(client)).toEqual(GENERIC);
    expect(client.raw()).not.toContain('hunter2');
    expect(client.response.complete).toBe(true);
    await expectStillServing();
  });

  it('passes an error from a route without sseStream() on to next(err): the normal express 500', async () => {
    const response = await request(server.url).get('/plain-throw');
    expect(response.status).toBe(500);
    expect(response.headers['content-type']).not.toMatch(/event-stream/);
    expect(passedOn).toHaveLength(1);
    expect((passedOn[0] as Error).message).toBe(SECRET);
    await expectStillServing();
  });

  it('passes a client error from a route without sseStream() on unchanged (its own status)', async () => {
    const response = await request(server.url).get('/plain-400');
    expect(response.status).toBe(400);
    expect(passedOn).toHaveLength(1);
    expect(passedOn[0]).toMatchObject({ message: 'Bad prompt', status: 400 });
  });
});

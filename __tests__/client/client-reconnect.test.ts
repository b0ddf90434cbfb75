/**
 * Reconnection: after a dropped connection readEvents() waits (the server's `retry:` wins over `reconnect.delay`),
 * sends the request again with `Last-Event-ID`, and a server that resumes from that id gives the loop every event
 * exactly once (both a hand-written one and the library's own `sseStream({ resume })`). Then the limits: when it gives
 * up, what it never retries, and that abort stops the wait.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Socket } from 'node:net';
import { MemoryStore, sseStream } from '../../lib';
import { readEvents, SseConnectionError, SseResponseError } from '../../lib/client';
import { deferred, Turns } from '../helpers/deferred';
import { listen, type TestServer } from '../helpers/sse-client';

interface Seen {
  lastEventId: string | undefined;
  authorization: string | undefined;
  body: unknown;
}

describe('readEvents({ reconnect })', () => {
  let server: TestServer;
  const requests = new Map<string, Seen[]>();
  const seen = (tag: string): Seen[] => {
    if (!requests.has(tag)) requests.set(tag, []);
    return requests.get(tag)!;
  };
  /** The client resolves turn N once it has event N; the server drops the connection right after that. */
  const delivered = new Turns<string>();

  beforeAll(async () => {
    const app = express();
    app.use((req, _res, next) => {
      seen(String(req.query.tag)).push({ lastEventId: req.get('last-event-id'), authorization: req.get('authorization'), body: req.body });
      next();
    });
    // Events 1..9, resumed after the Last-Event-ID; drops the connection once the client has each id in `drop`.
    // `retry: 5` tells the client to come back after 5 ms, where its own delay option says a minute.
    app.post('/resumable', express.json(), sseStream({ done: '[DONE]', heartbeat: 0, retry: 5 }), async (req, res) => {
      const tag = String(req.query.tag);
      const drops = String(req.query.drop ?? '').split(',').map(Number);
      seen(tag).at(-1)!.body = req.body;
      const from = Number(res.sse.lastEventId ?? 0) + 1;
      for (let id = from; id <= 9; id += 1) {
        res.sse.push({ n: id, of: (req.body as { job: string }).job }, { id });
        if (drops.includes(id)) {
          await delivered.get(`${tag}:${id}`).promise;
          res.socket?.destroy();
          return;
        }
      }
      await res.sse.close();
    });
    // Pushes an event and drops the connection, each time: `count` events in all, one per connection.
    app.get('/one-per-connection', sseStream({ done: '[DONE]', heartbeat: 0 }), async (req, res) => {
      const tag = String(req.query.tag);
      const next = Number(res.sse.lastEventId ?? 0) + 1;
      res.sse.push({ n: next }, { id: next });
      if (next === Number(req.query.count)) {
        await res.sse.close();
        return;
      }
      await delivered.get(`${tag}:${next}`).promise;
      res.socket?.destroy();
    });
    app.get('/drop-at-once', sseStream({ done: '[DONE]', heartbeat: 0 }), (_req, res) => {
      res.socket?.destroy();
    });
    app.get('/status/:code', (req, res) => {
      res.status(Number(req.params.code)).json({ error: `status ${req.params.code}` });
    });
    app.get('/ndjson-drop', sseStream({ format: 'ndjson', done: '[DONE]', heartbeat: 0 }), async (req, res) => {
      res.sse.push({ n: 1 });
      await delivered.get(`${String(req.query.tag)}:1`).promise;
      res.socket?.destroy();
    });
    app.get('/no-done', sseStream({ heartbeat: 0 }), async (_req, res) => {
      res.sse.push({ n: 1 }, { id: 1 });
      await res.sse.close();
    });
    server = await listen(app);
  });
  afterAll(() => server?.close());

  test('resumes with Last-Event-ID after each drop: every event once, in order; the POST body and headers sent again', async () => {
    const tag = 'resume';
    const values: number[] = [];
    const stream = readEvents<{ n: number; of: string }>(`${server.url}/resumable?tag=${tag}&drop=3,6`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer t0ken' },
      body: JSON.stringify({ job: 'report' }),
      done: '[DONE]',
      // A minute: the test can only finish in time if the server's `retry: 5` is honoured.
      reconnect: { delay: 60_000 },
    });
    for await (const event of stream) {
      expect(event.json().of).toBe('report');
      expect(event.retry).toBe(5);
      values.push(event.json().n);
      delivered.get(`${tag}:${event.id}`).resolve();
    }
    expect(values).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(seen(tag)).toEqual([
      { lastEventId: undefined, authorization: 'Bearer t0ken', body: { job: 'report' } },
      { lastEventId: '3', authorization: 'Bearer t0ken', body: { job: 'report' } },
      { lastEventId: '6', authorization: 'Bearer t0ken', body: { job: 'report' } },
    ]);
  });

  test('`lastEventId` is sent with the first request', async () => {
    const values: number[] = [];
    const stream = readEvents<{ n: number }>(`${server.url}/resumable?tag=first-id`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"job":"x"}',
      lastEventId: '7',
      done: '[DONE]',
    });
    for await (const event of stream) values.push(event.json().n);
    expect(values).toEqual([8, 9]);
    expect(seen('first-id').map((request) => request.lastEventId)).toEqual(['7']);
  });

  test('a connection that delivered an event resets the count of failures', async () => {
    const tag = 'reset';
    const values: number[] = [];
    // One retry allowed, but five drops in all: each connection delivered an event before it dropped.
    const stream = readEvents<{ n: number }>(`${server.url}/one-per-connection?tag=${tag}&count=6`, {
      done: '[DONE]',
      reconnect: { retries: 1, delay: 1 },
    });
    for await (const event of stream) {
      values.push(event.json().n);
      delivered.get(`${tag}:${event.id}`).resolve();
    }
    expect(values).toEqual([1, 2, 3, 4, 5, 6]);
    expect(seen(tag)).toHaveLength(6);
  });

  test('gives up after `retries` failed attempts in a row: connections that drop before any event', async () => {
    const stream = readEvents(`${server.url}/drop-at-once?tag=give-up`, { done: '[DONE]', reconnect: { retries: 2, delay: 1 } });
    const error = await stream.next().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SseConnectionError);
    expect(error).toMatchObject({ attempts: 3, message: expect.stringMatching(/^gave up after 3 failed connection attempts/) });
    expect(seen('give-up')).toHaveLength(3);
  });

  test('retries a 5xx answer, and gives up with it as the cause', async () => {
    const stream = readEvents(`${server.url}/status/503?tag=503`, { reconnect: { retries: 1, delay: 1 } });
    const error = (await stream.next().catch((caught: unknown) => caught)) as SseConnectionError;
    expect(error).toBeInstanceOf(SseConnectionError);
    expect(error.cause).toBeInstanceOf(SseResponseError);
    expect(error.cause).toMatchObject({ status: 503, body: '{"error":"status 503"}' });
    expect(seen('503')).toHaveLength(2);
  });

  test('retries a refused connection', async () => {
    // A port that was just free: nothing listens on it.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    let calls = 0;
    const stream = readEvents(`http://127.0.0.1:${port}/`, {
      reconnect: { retries: 2, delay: 1 },
      fetch: (url, init) => {
        calls += 1;
        return fetch(url, init);
      },
    });
    const error = await stream.next().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SseConnectionError);
    // undici's own TypeError, from another realm than the test's.
    expect((error as SseConnectionError).cause).toMatchObject({ name: 'TypeError', message: 'fetch failed' });
    expect(calls).toBe(3);
  });

  test('never retries a 4xx answer', async () => {
    const stream = readEvents(`${server.url}/status/401?tag=401`, { reconnect: { retries: 5, delay: 1 } });
    await expect(stream.next()).rejects.toMatchObject({ name: 'SseResponseError', status: 401 });
    expect(seen('401')).toHaveLength(1);
  });

  test('an NDJSON stream that dropped is not reconnected: it has no ids to resume from', async () => {
    const tag = 'ndjson';
    const stream = readEvents(`${server.url}/ndjson-drop?tag=${tag}`, { done: '[DONE]', reconnect: { delay: 1 } });
    const first = await stream.next();
    expect(first.value).toMatchObject({ data: '{"n":1}' });
    delivered.get(`${tag}:1`).resolve();
    await expect(stream.next()).rejects.toThrow(/NDJSON stream has no event ids to resume from/);
    expect(seen(tag)).toHaveLength(1);
  });

  test('without `done`, a stream that ends is finished: no reconnection', async () => {
    const events = [];
    for await (const event of readEvents(`${server.url}/no-done?tag=no-done`, { reconnect: { delay: 1 } })) events.push(event.data);
    expect(events).toEqual(['{"n":1}']);
    expect(seen('no-done')).toHaveLength(1);
  });

  test('aborting the signal while it waits to reconnect stops it at once', async () => {
    const controller = new AbortController();
    const firstRequest = deferred<void>();
    const stream = readEvents(`${server.url}/status/503?tag=abort-wait`, {
      signal: controller.signal,
      // An hour: the loop can only end in time by the abort.
      reconnect: { delay: 3_600_000, maxDelay: 3_600_000 },
      fetch: async (url, init) => {
        const response = await fetch(url, init);
        firstRequest.resolve();
        return response;
      },
    });
    const next = stream.next();
    await firstRequest.promise;
    controller.abort(new Error('cancelled while waiting'));
    await expect(next).rejects.toThrow('cancelled while waiting');
    expect(seen('abort-wait')).toHaveLength(1);
  });
});

describe('readEvents({ reconnect }) with sseStream({ resume })', () => {
  let server: TestServer;
  const sockets = new Set<Socket>();
  const lastEventIds: Array<string | undefined> = [];
  let routeRuns = 0;
  const gap = deferred<void>();
  const resumed = deferred<void>();

  beforeAll(async () => {
    const app = express();
    app.use((req, _res, next) => {
      lastEventIds.push(req.get('last-event-id'));
      if (req.get('last-event-id') !== undefined) resumed.resolve();
      next();
    });
    const resume = { key: (req: express.Request) => String(req.params.run), store: new MemoryStore() };
    app.get('/runs/:run', sseStream({ done: '[DONE]', heartbeat: 0, resume }), async (_req, res) => {
      routeRuns += 1;
      for (let n = 1; n <= 5; n += 1) res.sse.push({ n });
      await gap.promise;
      // While the client is away: these reach it when it comes back.
      for (let n = 6; n <= 8; n += 1) res.sse.push({ n });
      await resumed.promise;
      for (let n = 9; n <= 10; n += 1) res.sse.push({ n });
      await res.sse.close();
    });
    server = await listen(app);
    server.server.on('connection', (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
  });
  afterAll(() => server?.close());

  test('a connection cut mid-run resumes from Last-Event-ID: nothing missed, nothing doubled, the route ran once', async () => {
    const values: number[] = [];
    const ids: string[] = [];
    for await (const event of readEvents<{ n: number }>(`${server.url}/runs/one`, { done: '[DONE]', reconnect: { delay: 10 } })) {
      values.push(event.json().n);
      ids.push(event.id!);
      if (event.json().n === 5) {
        // The network drops under the client.
        for (const socket of sockets) socket.destroy();
        gap.resolve();
      }
    }
    expect(values).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(new Set(ids).size).toBe(10);
    expect(lastEventIds).toEqual([undefined, ids[4]]);
    expect(routeRuns).toBe(1);
  });
});

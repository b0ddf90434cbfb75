import { randomBytes } from 'node:crypto';
import http from 'node:http';
import zlib from 'node:zlib';
import compression from 'compression';
import express from 'express';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { sseStream } from '../lib';
import { deferred, loopTurns, type Deferred } from './helpers/deferred';
import { eventually, listen, openStream, type TestServer } from './helpers/sse-client';

/** A client that asks for gzip and gunzips the body as it arrives, feeding the text to the spec-following parser. */
interface GzipClient {
  status: number;
  headers: http.IncomingHttpHeaders;
  events: EventSourceMessage[];
  /** Compressed bytes received on the wire. */
  wire(): Buffer;
  /** The gunzipped text so far. */
  text(): string;
  waitForCount(count: number, timeoutMs?: number): Promise<void>;
  /** Resolves when the gunzipped body ended cleanly; rejects when the gzip data or the connection broke. */
  ended: Promise<void>;
  response: http.IncomingMessage;
  pause(): void;
  resume(): void;
  abort(): void;
}

function openGzipStream(url: string, options: { paused?: boolean } = {}): Promise<GzipClient> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { headers: { 'Accept-Encoding': 'gzip' }, agent: false });
    request.once('error', reject);
    request.once('response', (response) => {
      const events: EventSourceMessage[] = [];
      const wire: Buffer[] = [];
      const texts: string[] = [];
      const listeners = new Set<() => void>();
      const parser = createParser({
        onEvent: (event) => {
          events.push(event);
          listeners.forEach((listener) => listener());
        },
      });
      const gunzip = zlib.createGunzip();
      gunzip.setEncoding('utf8');
      gunzip.on('data', (text: string) => {
        texts.push(text);
        parser.feed(text);
      });
      response.on('data', (chunk: Buffer) => {
        wire.push(chunk);
        gunzip.write(chunk);
      });
      response.once('end', () => gunzip.end());
      const ended = new Promise<void>((done, fail) => {
        gunzip.once('end', done);
        gunzip.once('error', fail);
        response.once('error', fail);
        response.once('close', () => {
          if (!response.complete) fail(new Error('the connection closed before the response was complete'));
        });
      });
      ended.catch(() => undefined);
      if (options.paused) response.pause();
      resolve({
        status: response.statusCode ?? 0,
        headers: response.headers,
        events,
        wire: () => Buffer.concat(wire),
        text: () => texts.join(''),
        waitForCount: (count, timeoutMs = 5000) =>
          new Promise<void>((done, fail) => {
            const check = (): void => {
              if (events.length < count) return;
              clearTimeout(timer);
              listeners.delete(check);
              done();
            };
            const timer = setTimeout(() => {
              listeners.delete(check);
              fail(new Error(`timed out after ${timeoutMs} ms waiting for ${count} events; got ${events.length}: ${JSON.stringify(texts.join('').slice(-500))}`));
            }, timeoutMs);
            listeners.add(check);
            check();
          }),
        ended,
        response,
        pause: () => response.pause(),
        resume: () => response.resume(),
        abort: () => request.destroy(),
      });
    });
    request.end();
  });
}

/** Something that can tell the route how many events it has seen. */
interface Waiter {
  waitForCount(count: number, timeoutMs?: number): Promise<unknown>;
}

const LOCKSTEP_EVENTS = 8;

interface CloseResult {
  error?: unknown;
  closeReason: string | undefined;
}
/** What each `closeWith` route's `close()` did, by route. */
const closeResults = new Map<string, Deferred<CloseResult>>();

describe('behind compression()', () => {
  let server: TestServer;
  /** The route waits for the test's client before each next event; it reports how far it got. */
  let lockstepClient: Deferred<Waiter>;
  let lockstepResult: Deferred<{ pushed: number; error?: unknown }>;
  const queuedRoute = deferred<express.Response>();
  const queuedPayloads = Array.from({ length: 1500 }, () => randomBytes(500).toString('hex'));

  const lockstep: express.RequestHandler = async (_req, res) => {
    const client = await lockstepClient.promise;
    let pushed = 0;
    try {
      for (let n = 0; n < LOCKSTEP_EVENTS; n += 1) {
        res.sse.push({ n });
        pushed += 1;
        // Event n+1 is pushed only once the client has decoded event n: any event stuck in a buffer stalls this.
        await client.waitForCount(n + 1, 5000);
      }
      lockstepResult.resolve({ pushed });
    } catch (error) {
      lockstepResult.resolve({ pushed, error });
    }
    await res.sse.close();
  };

  const closeWith =
    (key: string, count: number): express.RequestHandler =>
    async (_req, res) => {
      const result = deferred<CloseResult>();
      closeResults.set(key, result);
      for (let n = 0; n < count; n += 1) res.sse.push({ n });
      try {
        await res.sse.close();
        result.resolve({ closeReason: res.sse.closeReason });
      } catch (error) {
        result.resolve({ error, closeReason: res.sse.closeReason });
      }
    };

  beforeAll(async () => {
    const app = express();
    app.use(compression());
    app.get('/default/lockstep', sseStream({ heartbeat: 0 }), lockstep);
    const gzipOn = { 'Cache-Control': 'no-cache' };
    app.get('/gzip/lockstep', sseStream({ heartbeat: 0, headers: gzipOn }), lockstep);
    app.get('/default/done', sseStream({ heartbeat: 0, done: '[DONE]' }), closeWith('default/done', 3));
    app.get('/gzip/done', sseStream({ heartbeat: 0, done: '[DONE]', headers: gzipOn }), closeWith('gzip/done', 3));
    app.get('/gzip/empty', sseStream({ heartbeat: 0, headers: gzipOn }), closeWith('gzip/empty', 0));
    app.get('/gzip/queued', sseStream({ heartbeat: 0, done: '[DONE]', headers: gzipOn, maxBuffer: 64 * 1024 * 1024 }), (_req, res) => {
      queuedRoute.resolve(res);
    });
    server = await listen(app);
  });
  afterAll(() => server.close());
  beforeEach(() => {
    lockstepClient = deferred<Waiter>();
    lockstepResult = deferred<{ pushed: number; error?: unknown }>();
  });

  it('by default leaves the stream uncompressed (no-transform), and each event reaches the client before the next is pushed', async () => {
    const client = await openStream(`${server.url}/default/lockstep`, { headers: { 'Accept-Encoding': 'gzip' } });
    expect(client.headers['content-encoding']).toBeUndefined();
    expect(client.headers['cache-control']).toBe('no-cache, no-transform');
    lockstepClient.resolve(client);
    const result = await lockstepResult.promise;
    expect(result.error).toBeUndefined();
    expect(result.pushed).toBe(LOCKSTEP_EVENTS);
    await client.ended;
    expect(client.events.map((event) => JSON.parse(event.data) as unknown)).toEqual(
      Array.from({ length: LOCKSTEP_EVENTS }, (_, n) => ({ n })),
    );
    // The wire carries the plain SSE text.
    expect(client.raw().startsWith('data: {"n":0}\n\n')).toBe(true);
  });

  it('when Cache-Control is overridden, compresses with gzip and still delivers each event before the next (res.flush())', async () => {
    const client = await openGzipStream(`${server.url}/gzip/lockstep`);
    expect(client.headers['content-encoding']).toBe('gzip');
    expect(client.headers['cache-control']).toBe('no-cache');
    lockstepClient.resolve(client);
    const result = await lockstepResult.promise;
    expect(result.error).toBeUndefined();
    expect(result.pushed).toBe(LOCKSTEP_EVENTS);
    await client.ended;
    expect(client.events.map((event) => JSON.parse(event.data) as unknown)).toEqual(
      Array.from({ length: LOCKSTEP_EVENTS }, (_, n) => ({ n })),
    );
    // Really gzip on the wire: the magic bytes, and no plain SSE text.
    expect(client.wire().subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(client.wire().toString('latin1')).not.toContain('data:');
  });

  it('close() with done ends cleanly when compression() passes the stream through', async () => {
    const client = await openStream(`${server.url}/default/done`, { headers: { 'Accept-Encoding': 'gzip' } });
    const result = await closeResultOf('default/done');
    expect(result).toEqual({ closeReason: 'close' });
    await client.ended;
    expect(client.response.complete).toBe(true);
    expect(client.events.map((event) => event.data)).toEqual(['{"n":0}', '{"n":1}', '{"n":2}', '[DONE]']);
  });

  it('close() with done ends cleanly when compression() gzips the stream', async () => {
    const client = await openGzipStream(`${server.url}/gzip/done`);
    expect(client.headers['content-encoding']).toBe('gzip');
    const result = await closeResultOf('gzip/done');
    expect(result).toEqual({ closeReason: 'close' });
    await client.ended;
    expect(client.response.complete).toBe(true);
    expect(client.events.map((event) => event.data)).toEqual(['{"n":0}', '{"n":1}', '{"n":2}', '[DONE]']);
    expect(client.text().endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('close() with nothing left to send ends cleanly when compression() gzips the stream', async () => {
    const client = await openGzipStream(`${server.url}/gzip/empty`);
    const result = await closeResultOf('gzip/empty');
    expect(result).toEqual({ closeReason: 'close' });
    await client.ended;
    expect(client.text()).toBe('');
  });

  it('close() sends the queued events and done through gzip when the client had fallen behind', async () => {
    const client = await openGzipStream(`${server.url}/gzip/queued`, { paused: true });
    expect(client.headers['content-encoding']).toBe('gzip');
    const res = await queuedRoute.promise;
    for (const payload of queuedPayloads.slice(0, -1)) expect(res.sse.push(payload)).toBe(true);
    // Incompressible data and a client that reads nothing: the writes back up, so send() has to wait for the client.
    let probeSettled = false;
    const probe = res.sse.send(queuedPayloads[queuedPayloads.length - 1]).finally(() => (probeSettled = true));
    await loopTurns(20);
    expect(probeSettled).toBe(false);
    const closing = res.sse.close();
    expect(res.sse.closeReason).toBe('close');
    client.resume();
    await closing;
    await probe;
    await client.ended;
    expect(client.events.map((event) => event.data)).toEqual([...queuedPayloads, '[DONE]']);
  });
});

async function closeResultOf(key: string): Promise<CloseResult> {
  // The route registers its result when it runs, which is before the client can see the end of the response.
  await eventually(() => closeResults.has(key), 5000, `route ${key} to run`);
  return (closeResults.get(key) as Deferred<CloseResult>).promise;
}

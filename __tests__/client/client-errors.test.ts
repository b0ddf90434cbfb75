/**
 * readEvents()'s errors: a non-2xx status or a wrong content type (with the status and the first bytes of the body,
 * also when the body stays open), a malformed NDJSON line (with its line number, after the lines before it), a
 * dropped connection, and invalid options (a TypeError naming the option, at the call).
 */
import express from 'express';
import { sseStream } from '../../lib';
import { NdjsonParseError, readEvents, SseConnectionError, SseResponseError, type ReadEventsInit } from '../../lib/client';
import { deferred } from '../helpers/deferred';
import { listen, type TestServer } from '../helpers/sse-client';

describe('readEvents() errors', () => {
  let server: TestServer;
  const streamingLoginClosed = deferred();

  beforeAll(async () => {
    const app = express();
    app.get('/unauthorized', (_req, res) => {
      res.status(401).json({ error: 'sign in first' });
    });
    app.get('/html', (_req, res) => {
      res.type('html').send(`<!doctype html><title>Not a stream!</title>${'é'.repeat(1000)}`);
    });
    app.get('/streaming-login', (req, res) => {
      // A login page that streams and never ends, as a proxy in front of the real route might send.
      res.status(200).type('html').write('<html>Please sign in');
      req.socket.on('close', () => streamingLoginClosed.resolve());
    });
    app.get('/streaming-error', (_req, res) => {
      res.status(503).type('text').write('busy, ');
    });
    app.get('/bad-ndjson', sseStream({ format: 'ndjson', heartbeat: 0 }), (_req, res) => {
      res.write('{"ok":1}\n\n{"ok":2}\n{"broken": \n{"ok":3}\n');
      res.end();
    });
    app.get('/cut-short', sseStream({ done: '[DONE]', heartbeat: 0 }), async (_req, res) => {
      res.sse.push({ n: 1 });
      // Ends without the terminator, as a server that crashed or was restarted would.
      res.end();
    });
    app.get('/stream', sseStream({ heartbeat: 0 }), async (_req, res) => {
      res.sse.push({ n: 1 });
      await res.sse.close();
    });
    server = await listen(app);
  });
  afterAll(() => server?.close());

  test('a 401 throws an SseResponseError with the status, the content type and the body', async () => {
    const error = (await readEvents(`${server.url}/unauthorized`)
      .next()
      .catch((caught: unknown) => caught)) as SseResponseError;
    expect(error).toBeInstanceOf(SseResponseError);
    expect(error).toMatchObject({
      name: 'SseResponseError',
      status: 401,
      contentType: 'application/json; charset=utf-8',
      body: '{"error":"sign in first"}',
      url: `${server.url}/unauthorized`,
    });
    expect(error.message).toBe(`${server.url}/unauthorized answered 401 Unauthorized: {"error":"sign in first"}`);
  });

  test('a 200 that is not SSE or NDJSON throws, with at most the first 512 bytes of the body', async () => {
    const error = (await readEvents(`${server.url}/html`)
      .next()
      .catch((caught: unknown) => caught)) as SseResponseError;
    expect(error).toBeInstanceOf(SseResponseError);
    expect(error.status).toBe(200);
    expect(error.contentType).toBe('text/html; charset=utf-8');
    expect(error.message).toMatch(/^expected text\/event-stream or application\/x-ndjson from .*, got "text\/html; charset=utf-8": <!doctype html>/);
    expect(error.body.startsWith('<!doctype html><title>Not a stream!</title>éé')).toBe(true);
    // 512 bytes cut inside a two-byte character: the half character is left out rather than shown as U+FFFD.
    expect(new TextEncoder().encode(error.body).length).toBe(511);
    expect(error.body).not.toContain('\uFFFD');
  });

  test('a wrong content type or a 503 whose body stays open still throws, with the first bytes, and closes it', async () => {
    const login = (await readEvents(`${server.url}/streaming-login`)
      .next()
      .catch((caught: unknown) => caught)) as SseResponseError;
    expect(login).toBeInstanceOf(SseResponseError);
    expect(login).toMatchObject({ status: 200, body: '<html>Please sign in' });
    await streamingLoginClosed.promise;
    const busy = (await readEvents(`${server.url}/streaming-error`)
      .next()
      .catch((caught: unknown) => caught)) as SseResponseError;
    expect(busy).toBeInstanceOf(SseResponseError);
    expect(busy).toMatchObject({ status: 503, body: 'busy, ' });
  });

  test('a malformed NDJSON line throws an NdjsonParseError naming its line, after the lines before it', async () => {
    const values: unknown[] = [];
    let error: unknown;
    try {
      for await (const event of readEvents(`${server.url}/bad-ndjson`)) values.push(event.json());
    } catch (caught) {
      error = caught;
    }
    expect(values).toEqual([{ ok: 1 }, { ok: 2 }]);
    expect(error).toBeInstanceOf(NdjsonParseError);
    expect(error).toBeInstanceOf(SyntaxError);
    expect(error).toMatchObject({ lineNumber: 4, line: '{"broken": ', message: 'NDJSON line 4 could not be parsed: "{\\"broken\\": "' });
  });

  test('a stream that ends before its `done` terminator throws an SseConnectionError (without reconnect)', async () => {
    const data: string[] = [];
    let error: unknown;
    try {
      for await (const event of readEvents(`${server.url}/cut-short`, { done: '[DONE]' })) data.push(event.data);
    } catch (caught) {
      error = caught;
    }
    expect(data).toEqual(['{"n":1}']);
    expect(error).toBeInstanceOf(SseConnectionError);
    expect((error as Error).message).toBe('the connection failed (the stream ended before its done terminator "[DONE]")');
  });

  test('a 204 No Content is an empty stream', async () => {
    const noContent = new Response(null, { status: 204 });
    const events = [];
    for await (const event of readEvents(noContent)) events.push(event);
    expect(events).toEqual([]);
  });

  test.each<[string, unknown, ReadEventsInit | undefined, RegExp]>([
    ['input', 42, undefined, /^input: expected a URL \(a string or URL\) or a Response, got number 42$/],
    ['init', '/x', 'nope' as unknown as ReadEventsInit, /^init: expected an object, got the string "nope"$/],
    ['done', '/x', { done: 1 as unknown as string }, /^done: expected a string, got number 1$/],
    ['parse', '/x', { parse: 'json' as unknown as () => unknown }, /^parse: expected a function, got the string "json"$/],
    ['fetch', '/x', { fetch: {} as unknown as typeof fetch }, /^fetch: expected a function, got object$/],
    ['lastEventId', '/x', { lastEventId: 'a\nb' }, /^lastEventId: expected a string without CR, LF or NUL/],
    ['reconnect', '/x', { reconnect: 3 as unknown as boolean }, /^reconnect: expected a boolean or/],
    ['reconnect.retries', '/x', { reconnect: { retries: -1 } }, /^reconnect\.retries: expected a non-negative integer, got number -1$/],
    ['reconnect.delay', '/x', { reconnect: { delay: 1.5 } }, /^reconnect\.delay: expected a non-negative integer, got number 1.5$/],
    ['reconnect.maxDelay', '/x', { reconnect: { maxDelay: 2 ** 31 } }, /^reconnect\.maxDelay: at most 2147483647/],
    ['reconnect.retry', '/x', { reconnect: { retry: 3 } as never }, /^reconnect\.retry: not an option of reconnect$/],
    ['signal', '/x', { signal: 'stop' as unknown as AbortSignal }, /^signal: expected an AbortSignal/],
    ['headers', '/x', { headers: { 'bad header': 'x' } }, /^headers: /],
    ['body', '/x', { reconnect: true, body: new ReadableStream(), method: 'POST' }, /^reconnect: a ReadableStream body cannot be sent again/],
  ])('%s: a bad value throws a TypeError naming it, at the call', (_name, input, init, message) => {
    let calls = 0;
    const counting = (): Promise<Response> => {
      calls += 1;
      return Promise.resolve(new Response(null, { status: 204 }));
    };
    const options = init === undefined || typeof init !== 'object' ? init : { fetch: counting, ...init };
    expect(() => readEvents(input as string, options)).toThrow(TypeError);
    expect(() => readEvents(input as string, options)).toThrow(message);
    expect(calls).toBe(0);
  });

  test('a Response cannot be reconnected, nor read twice', async () => {
    const response = await fetch(`${server.url}/stream`);
    expect(() => readEvents(response, { reconnect: true })).toThrow(/^reconnect: needs a URL to reconnect to/);
    for await (const _event of readEvents(response)) break;
    expect(() => readEvents(response)).toThrow(/^input: the body of this Response was already read$/);
  });
});

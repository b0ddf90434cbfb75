import express from 'express';
import request from 'supertest';
import { createParser } from 'eventsource-parser';
import { sseStream, type SseStreamOptions } from '../lib';
import { eventually, listen, openStream, parseEvents, type TestServer } from './helpers/sse-client';

/** Test-only cast for option values the types forbid but JavaScript callers can still pass. */
const loose = (options: Record<string, unknown>): SseStreamOptions => options as SseStreamOptions;

/** Everything a spec-following parser reports for `body`, in wire order: `retry:<ms>`, `event:<data>`, `comment:<text>`. */
function wireOrder(body: string): string[] {
  const seen: string[] = [];
  const parser = createParser({
    onEvent: (event) => seen.push(`event:${event.data}`),
    onRetry: (retry) => seen.push(`retry:${retry}`),
    onComment: (comment) => seen.push(`comment:${comment}`),
  });
  parser.feed(body);
  return seen;
}

/** Expects `create` to throw a TypeError whose message names `option`. */
function expectOptionError(create: () => unknown, option: string): void {
  let thrown: unknown;
  try {
    create();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(TypeError);
  expect((thrown as TypeError).message).toContain(option);
}

describe('sseStream() options', () => {
  describe('validation at creation time', () => {
    const badNumbers: Array<[string, unknown]> = [
      ['negative', -1],
      ['fractional', 1.5],
      ['a string', '100'],
      ['NaN', NaN],
      ['Infinity', Infinity],
    ];
    const numericOptions = ['retry', 'heartbeat', 'stallTimeout', 'highWaterMark', 'maxBuffer'];
    const numericCases = numericOptions.flatMap((option) =>
      badNumbers.map(([kind, value]): [string, string, unknown] => [option, kind, value]),
    );

    it.each(numericCases)('throws a TypeError naming %s when it is %s', (option, _kind, value) => {
      expectOptionError(() => sseStream(loose({ [option]: value })), option);
    });

    it.each([['xml'], ['json'], ['SSE'], [42]])('throws a TypeError naming format for the unknown format %p', (format) => {
      expectOptionError(() => sseStream(loose({ format })), 'format');
    });

    it.each([[42], [true], [['[DONE]']], [{ data: '[DONE]' }]])('throws a TypeError naming done when it is %p', (done) => {
      expectOptionError(() => sseStream(loose({ done })), 'done');
    });

    it.each([['JSON.stringify'], [{}], [42]])('throws a TypeError naming serialize when it is %p', (serialize) => {
      expectOptionError(() => sseStream(loose({ serialize })), 'serialize');
    });

    it('throws a TypeError naming stallTimeout past the longest timer delay, and takes the largest one', () => {
      expectOptionError(() => sseStream({ stallTimeout: 2 ** 31 }), 'stallTimeout');
      expect(() => sseStream({ stallTimeout: 2 ** 31 - 1, heartbeat: 2 ** 31 - 1 })).not.toThrow();
    });

    it('throws a TypeError naming maxBuffer when it is below highWaterMark', () => {
      expectOptionError(() => sseStream({ highWaterMark: 1000, maxBuffer: 999 }), 'maxBuffer');
    });

    it('raises the default maxBuffer to a highWaterMark above 4 MiB, rather than rejecting an option never set', () => {
      expect(() => sseStream({ highWaterMark: 8 * 1024 * 1024 })).not.toThrow();
    });

    it('throws a TypeError naming an unknown option key', () => {
      expectOptionError(() => sseStream(loose({ heartbeats: 1000 })), 'heartbeats');
      expectOptionError(() => sseStream(loose({ retry: 1000, onFinish: () => undefined })), 'onFinish');
    });

    it.each([
      ['an invalid header name', { 'Bad Header': 'x' }],
      ['an empty header name', { '': 'x' }],
      ['a header value holding CRLF', { 'X-Injected': 'ok\r\nSet-Cookie: stolen=1' }],
      ['a header value holding LF', { 'X-Injected': 'ok\nx' }],
    ])('throws a TypeError naming headers for %s', (_name, headers) => {
      expectOptionError(() => sseStream({ headers }), 'headers');
    });

    it('accepts every option at its boundary without throwing', () => {
      expect(() =>
        sseStream({
          retry: 0,
          heartbeat: 0,
          highWaterMark: 0,
          maxBuffer: 0,
          format: 'auto',
          done: '',
          serialize: String,
          headers: { 'X-Extra': 'yes' },
        }),
      ).not.toThrow();
      expect(() => sseStream()).not.toThrow();
      expect(() => sseStream({})).not.toThrow();
      expect(() => sseStream({ format: 'ndjson' })).not.toThrow();
      expect(() => sseStream({ format: 'sse', highWaterMark: 10, maxBuffer: 10 })).not.toThrow();
    });
  });

  describe('on the wire', () => {
    let server: TestServer;
    let heldResponse: express.Response | undefined;

    beforeAll(async () => {
      const app = express();
      const pushSome = (_req: express.Request, res: express.Response): void => {
        res.sse.push({ a: 1 });
        res.sse.push([1, 'two']);
        res.sse.push(null);
        res.sse.push(7);
        res.sse.push('plain text');
        void res.sse.close();
      };
      app.get('/custom', sseStream({ heartbeat: 0, serialize: (value) => `<${JSON.stringify(value)}>` }), pushSome);
      app.get('/pretty', sseStream({ heartbeat: 0, serialize: (value) => JSON.stringify(value, null, 2) }), pushSome);
      app.get('/retry', sseStream({ heartbeat: 0, retry: 2500 }), pushSome);
      app.get('/retry-zero', sseStream({ heartbeat: 0, retry: 0 }), pushSome);
      app.get('/no-retry', sseStream({ heartbeat: 0 }), pushSome);
      app.get('/retry-held', sseStream({ heartbeat: 0, retry: 4000 }), (_req, res) => {
        // The route writes nothing: whatever reaches the client came from the middleware.
        heldResponse = res;
      });
      server = await listen(app);
    });
    afterAll(() => server.close());

    it('uses a custom serialize for non-string data, and sends strings as they are', async () => {
      const events = parseEvents((await request(server.url).get('/custom')).text);
      expect(events.map((event) => event.data)).toEqual(['<{"a":1}>', '<[1,"two"]>', '<null>', '<7>', 'plain text']);
    });

    it('sends a multi-line serialisation as one event', async () => {
      const events = parseEvents((await request(server.url).get('/pretty')).text);
      expect(events.map((event) => event.data)).toEqual([
        JSON.stringify({ a: 1 }, null, 2),
        JSON.stringify([1, 'two'], null, 2),
        'null',
        '7',
        'plain text',
      ]);
    });

    it('writes `retry: <ms>` as the very first frame, before any event', async () => {
      const body = (await request(server.url).get('/retry')).text;
      expect(wireOrder(body)).toEqual(['retry:2500', 'event:{"a":1}', 'event:[1,"two"]', 'event:null', 'event:7', 'event:plain text']);
      expect(body.startsWith('retry:')).toBe(true);
    });

    it('writes `retry: 0` too', async () => {
      const body = (await request(server.url).get('/retry-zero')).text;
      expect(wireOrder(body)[0]).toBe('retry:0');
    });

    it('writes no retry field without the option', async () => {
      const body = (await request(server.url).get('/no-retry')).text;
      expect(wireOrder(body).filter((entry) => entry.startsWith('retry:'))).toEqual([]);
      expect(body).not.toMatch(/^retry/m);
    });

    it('sends the retry frame before the route runs, even when it never pushes', async () => {
      const client = await openStream(`${server.url}/retry-held`);
      try {
        await eventually(() => client.retries.length > 0, 2000, 'the retry frame');
        expect(client.retries).toEqual([4000]);
        expect(client.events).toEqual([]);
        expect(heldResponse).toBeDefined();
      } finally {
        await heldResponse?.sse.close();
        await client.ended;
      }
    });
  });
});

import express from 'express';
import pino from 'pino';
import request from 'supertest';
import { sseDestination, sseStream } from '../lib';
import { eventually, listen, openStream, parseEvents, type TestServer } from './helpers/sse-client';

const NDJSON = 'application/x-ndjson; charset=utf-8';
const EVENT_STREAM = 'text/event-stream; charset=utf-8';

/** Fetches `url` (with `accept` as the Accept header when given) and returns its status, content type and whole body as text, whatever the content type. */
async function fetchText(url: string, accept?: string): Promise<{ status: number; type: string | undefined; body: string }> {
  const pending = request(url).get('');
  if (accept !== undefined) void pending.set('Accept', accept);
  const response = await pending.buffer(true).parse((res, done) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => (text += chunk));
    res.on('end', () => done(null, text));
  });
  return { status: response.status, type: response.headers['content-type'] as string | undefined, body: response.body as string };
}

describe("format: 'ndjson'", () => {
  let server: TestServer;
  let heldResponse: express.Response | undefined;
  const unicodeBreaks: unknown[] = ['a\u2028b', { 'key\u2029': 'x\u0085y' }, ['\u2028\u2029\u0085']];
  const pushed: unknown[] = ['hello', 'two\nlines', '"quoted"', { a: 1, nested: { text: 'x\r\ny' } }, [1, 'two'], 42, 0, true, null];

  beforeAll(async () => {
    const app = express();
    app.get('/values', sseStream({ format: 'ndjson', heartbeat: 0, retry: 1000, done: '[DONE]' }), (_req, res) => {
      res.sse.push(pushed[0], { event: 'greeting', id: 1, retry: 500 });
      for (const value of pushed.slice(1)) res.sse.push(value, { event: 'e', id: 'x' });
      void res.sse.close();
    });
    app.get('/comment', sseStream({ format: 'ndjson', heartbeat: 0 }), (_req, res) => {
      res.sse.push(1);
      res.sse.comment('not in ndjson');
      res.sse.comment('multi\nline');
      res.sse.push(2);
      void res.sse.close();
    });
    const logger = pino({ base: undefined, timestamp: false }, sseDestination());
    app.get('/pino-unicode-breaks', sseStream({ format: 'ndjson', heartbeat: 0 }), async (_req, res) => {
      logger.info({ note: 'x\u0085y' }, 'a\u2028b\u2029c');
      await res.sse.close();
    });
    app.get('/unicode-breaks', sseStream({ format: 'ndjson', heartbeat: 0, done: 'end\u2028' }), (_req, res) => {
      for (const value of unicodeBreaks) res.sse.push(value);
      res.sse.push('plain');
      void res.sse.close();
    });
    app.get('/heartbeat', sseStream({ format: 'ndjson', heartbeat: 20 }), (_req, res) => {
      res.sse.push({ n: 1 });
      heldResponse = res;
    });
    server = await listen(app);
  });
  afterAll(() => server.close());

  it('escapes U+2028, U+2029 and U+0085, which Unicode line readers end a line at: same JSON values, one line each', async () => {
    const { body } = await fetchText(`${server.url}/unicode-breaks`);
    expect(body).toBe(
      '"a\\u2028b"\n{"key\\u2029":"x\\u0085y"}\n["\\u2028\\u2029\\u0085"]\n"plain"\n"end\\u2028"\n',
    );
    // Python's str.splitlines() (httpx's iter_lines()) splits at all three, and at nothing else in this body.
    expect(body.split(/\r\n|[\n\r\u2028\u2029\u0085]/).filter((line) => line !== '').map((line) => JSON.parse(line) as unknown)).toEqual([
      ...unicodeBreaks,
      'plain',
      'end\u2028',
    ]);
  });

  it('sends the ndjson content type', async () => {
    const { status, type } = await fetchText(`${server.url}/values`);
    expect(status).toBe(200);
    expect(type).toBe(NDJSON);
  });

  it('writes each push as one JSON line (strings JSON-encoded too), ignoring event, id and retry, then "[DONE]"', async () => {
    const { body } = await fetchText(`${server.url}/values`);
    expect(body).toBe([...pushed, '[DONE]'].map((value) => `${JSON.stringify(value)}\n`).join(''));
    const lines = body.split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(pushed.length + 1);
    expect(lines.map((line) => JSON.parse(line) as unknown)).toEqual([...pushed, '[DONE]']);
    expect(body).not.toMatch(/^(event|id|retry|data):/m);
  });

  it('writes the done data as its JSON string, as the last line', async () => {
    const { body } = await fetchText(`${server.url}/values`);
    const lines = body.trimEnd().split('\n');
    expect(lines[lines.length - 1]).toBe('"[DONE]"');
  });

  it("pino's log lines through sseDestination() get the same escapes", async () => {
    const { body } = await fetchText(`${server.url}/pino-unicode-breaks`);
    expect(body).toBe('{"type":"log","level":"info","message":"a\\u2028b\\u2029c","note":"x\\u0085y"}\n');
  });

  it('comment() writes nothing', async () => {
    const { body } = await fetchText(`${server.url}/comment`);
    expect(body).toBe('1\n2\n');
  });

  it('the heartbeat writes an empty line, and every non-empty line still parses', async () => {
    const client = await openStream(`${server.url}/heartbeat`);
    try {
      expect(client.headers['content-type']).toBe(NDJSON);
      // Two heartbeats after the first value: at least two empty lines following it.
      await eventually(() => client.raw().startsWith('{"n":1}\n\n\n'), 5000, 'two heartbeat lines');
      const lines = client.raw().split('\n');
      expect(lines.filter((line) => line !== '')).toEqual(['{"n":1}']);
      expect(lines.filter((line) => line !== '').map((line) => JSON.parse(line) as unknown)).toEqual([{ n: 1 }]);
      expect(client.raw()).not.toMatch(/^:/m);
    } finally {
      await heldResponse?.sse.close();
      await client.ended;
    }
  });
});

describe("format: 'auto'", () => {
  let server: TestServer;
  const accepts: Array<string | undefined> = [];

  beforeAll(async () => {
    const app = express();
    app.get('/', sseStream({ format: 'auto', heartbeat: 0 }), (req, res) => {
      accepts.push(req.get('Accept'));
      res.sse.push({ n: 1 });
      res.sse.push('text');
      void res.sse.close();
    });
    server = await listen(app);
  });
  afterAll(() => server.close());

  it.each([
    ['application/x-ndjson'],
    ['application/x-ndjson, text/event-stream;q=0.5'],
    ['text/event-stream;q=0.1, application/x-ndjson'],
  ])('streams ndjson when Accept is %p', async (accept) => {
    const { type, body } = await fetchText(server.url, accept);
    expect(type).toBe(NDJSON);
    expect(body).toBe('{"n":1}\n"text"\n');
  });

  it.each([
    ['text/event-stream'],
    ['*/*'],
    ['text/event-stream, application/x-ndjson;q=0.5'],
  ])('streams SSE when Accept is %p', async (accept) => {
    const { type, body } = await fetchText(server.url, accept);
    expect(type).toBe(EVENT_STREAM);
    expect(parseEvents(body).map((event) => event.data)).toEqual(['{"n":1}', 'text']);
  });

  it('streams SSE when the request has no Accept header', async () => {
    accepts.length = 0;
    const client = await openStream(server.url);
    await client.ended;
    expect(accepts).toEqual([undefined]);
    expect(client.headers['content-type']).toBe(EVENT_STREAM);
    // The format depends on Accept, so caches must key on it.
    expect(client.headers['vary']).toBe('Accept');
    expect(client.events.map((event) => event.data)).toEqual(['{"n":1}', 'text']);
  });
});

/**
 * readEvents() over SSE against the library's own server on loopback: GET and POST (a JSON body and an
 * Authorization header, which EventSource cannot send), every field of an event, json() and `parse`, the `done`
 * terminator.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import { sseStream } from '../../lib';
import { readEvents, type ServerEvent } from '../../lib/client';
import { deferred } from '../helpers/deferred';
import { listen, type TestServer } from '../helpers/sse-client';

async function collect<T>(events: AsyncIterable<ServerEvent<T>>): Promise<Array<ServerEvent<T>>> {
  const all: Array<ServerEvent<T>> = [];
  for await (const event of events) all.push(event);
  return all;
}

describe('readEvents() over text/event-stream', () => {
  let server: TestServer;
  const seen: Array<{ method: string; headers: http.IncomingHttpHeaders; body: unknown }> = [];

  beforeAll(async () => {
    const app = express();
    app.get('/fields', sseStream({ heartbeat: 0, retry: 2500 }), async (_req, res) => {
      res.sse.push({ n: 1 });
      res.sse.push('two\nlines', { event: 'text', id: 'a-2' });
      res.sse.push({ n: 3 }, { id: 3, retry: 700 });
      res.sse.push('');
      await res.sse.close();
    });
    app.post('/chat', express.json(), sseStream({ heartbeat: 0, done: '[DONE]' }), async (req, res) => {
      seen.push({ method: req.method, headers: req.headers, body: req.body });
      const prompt = (req.body as { prompt: string }).prompt;
      for (const word of prompt.split(' ')) res.sse.push({ token: word });
      await res.sse.close();
    });
    app.get('/echo-accept', sseStream({ heartbeat: 0, format: 'auto' }), async (req, res) => {
      res.sse.push({ accept: req.get('accept') ?? null });
      await res.sse.close();
    });
    server = await listen(app);
  });
  afterAll(() => server?.close());

  test('GET yields one object per event with data, event, id and retry, in order', async () => {
    const events = await collect(readEvents(`${server.url}/fields`));
    expect(events.map(({ data, event, id, retry }) => ({ data, event, id, retry }))).toEqual([
      { data: '{"n":1}', event: undefined, id: undefined, retry: 2500 },
      { data: 'two\nlines', event: 'text', id: 'a-2', retry: 2500 },
      { data: '{"n":3}', event: undefined, id: '3', retry: 700 },
      { data: '', event: undefined, id: undefined, retry: 700 },
    ]);
    expect(events[0].json()).toEqual({ n: 1 });
    // Parsed once, then the same value.
    expect(events[2].json()).toBe(events[2].json());
  });

  test('json() on data that is not JSON throws a SyntaxError quoting it', async () => {
    const events = await collect(readEvents(new URL('/fields', server.url)));
    expect(() => events[1].json()).toThrow(SyntaxError);
    expect(() => events[1].json()).toThrow(/not JSON.*"two\\nlines"/);
  });

  test('POST sends the JSON body and headers; typed json() values; stops at [DONE] without yielding it', async () => {
    const tokens: string[] = [];
    const stream = readEvents<{ token: string }>(`${server.url}/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer s3cret' },
      body: JSON.stringify({ prompt: 'streams over post' }),
      done: '[DONE]',
    });
    for await (const event of stream) tokens.push(event.json().token);
    expect(tokens).toEqual(['streams', 'over', 'post']);
    expect(seen.at(-1)).toMatchObject({
      method: 'POST',
      body: { prompt: 'streams over post' },
      headers: { authorization: 'Bearer s3cret', accept: 'text/event-stream, application/x-ndjson;q=0.9' },
    });
  });

  test('without `done`, the terminator is an ordinary event', async () => {
    const events = await collect(
      readEvents(`${server.url}/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":"x"}' }),
    );
    expect(events.map((event) => event.data)).toEqual(['{"token":"x"}', '[DONE]']);
  });

  test('`parse` replaces JSON.parse for json()', async () => {
    const events = await collect(readEvents(`${server.url}/fields`, { parse: (data) => data.length }));
    expect(events.map((event) => event.json())).toEqual([7, 9, 7, 0]);
  });

  test('a caller-given Accept header is sent as it is (and format: auto answers it)', async () => {
    const [event] = await collect(readEvents<{ accept: string }>(`${server.url}/echo-accept`, { headers: { accept: 'text/event-stream' } }));
    expect(event.json()).toEqual({ accept: 'text/event-stream' });
  });

  test('a Response fetched elsewhere can be read', async () => {
    const response = await fetch(`${server.url}/fields`);
    const events = await collect(readEvents(response));
    expect(events).toHaveLength(4);
    expect(response.bodyUsed).toBe(true);
  });

  test('the loop ends at `done` even when the server keeps the connection open, and closes it', async () => {
    const closed = deferred<void>();
    const raw = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\ndata: [DONE]\n\ndata: after done\n\n');
      res.on('close', () => closed.resolve());
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = raw.address() as AddressInfo;
      const events = await collect(readEvents(`http://127.0.0.1:${port}/`, { done: '[DONE]' }));
      expect(events.map((event) => event.data)).toEqual(['one']);
      await closed.promise;
    } finally {
      raw.closeAllConnections();
      await new Promise((resolve) => raw.close(resolve));
    }
  });
});

test('lib/client/ imports only eventsource-parser and uses no Node-only global, so it runs in browsers', () => {
  // Every module the client entry reaches through relative imports, its own folder and the shared option checks.
  const seen = new Set<string>();
  const external = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = readFileSync(file, 'utf8');
    expect([file, source.match(/\b(?:require\(|process\.|Buffer\b|__dirname|setImmediate\b)/)?.[0]]).toEqual([file, undefined]);
    for (const [, specifier] of source.matchAll(/^\s*(?:import|export)\b[^;]*?from\s+'([^']+)'/gm)) {
      if (specifier.startsWith('.')) visit(path.resolve(path.dirname(file), specifier.replace(/\.js$/, '.ts')));
      else external.add(specifier);
    }
  };
  visit(path.join(__dirname, '../../lib/client/index.ts'));
  expect([...external]).toEqual(['eventsource-parser']);
  expect([...seen].map((file) => path.relative(path.join(__dirname, '../../lib'), file)).sort()).toEqual([
    'client/decoders.ts',
    'client/errors.ts',
    'client/index.ts',
    'client/plan.ts',
    'client/response.ts',
    'client/types.ts',
    'options.ts',
  ]);
});

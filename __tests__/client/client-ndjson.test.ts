/**
 * readEvents() over application/x-ndjson, and the decoding of both formats across chunk boundaries: a line, and a
 * multi-byte UTF-8 character, split between two chunks (through a constructed Response, and over a real socket with
 * two separate writes).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
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

/** A Response whose body arrives as exactly these byte chunks. */
function chunked(contentType: string, chunks: Uint8Array[]): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  return new Response(body, { headers: { 'content-type': contentType } });
}

/** The bytes of `text` cut at every given byte offset. */
function cut(text: string, ...offsets: number[]): Uint8Array[] {
  const bytes = new TextEncoder().encode(text);
  const bounds = [0, ...offsets, bytes.length];
  return bounds.slice(1).map((end, i) => bytes.slice(bounds[i], end));
}

const EURO = '€'; // E2 82 AC in UTF-8
const OTTER = '🦦'; // F0 9F A6 A6

describe('readEvents() over application/x-ndjson', () => {
  let server: TestServer;

  beforeAll(async () => {
    const app = express();
    app.get('/values', sseStream({ format: 'ndjson', heartbeat: 0 }), async (_req, res) => {
      for (const value of [{ a: 1 }, 'text', 42, null, [1, 2]]) res.sse.push(value);
      await res.sse.close();
    });
    app.post('/done', express.json(), sseStream({ format: 'auto', done: '[DONE]', heartbeat: 0 }), async (req, res) => {
      res.sse.push({ echo: (req.body as { q: string }).q });
      res.sse.push({ last: true });
      await res.sse.close();
    });
    server = await listen(app);
  });
  afterAll(() => server?.close());

  test('one event per line: data is the line, json() its value', async () => {
    const events = await collect(readEvents(`${server.url}/values`));
    expect(events.map((event) => event.data)).toEqual(['{"a":1}', '"text"', '42', 'null', '[1,2]']);
    expect(events.map((event) => event.json())).toEqual([{ a: 1 }, 'text', 42, null, [1, 2]]);
    expect(events[0]).toMatchObject({ event: undefined, id: undefined, retry: undefined });
  });

  test('POST with Accept: application/x-ndjson gets NDJSON from format: auto; "[DONE]" ends the loop', async () => {
    const events = await collect(
      readEvents(`${server.url}/done`, {
        method: 'POST',
        headers: { accept: 'application/x-ndjson', 'content-type': 'application/json' },
        body: JSON.stringify({ q: 'ndjson' }),
        done: '[DONE]',
      }),
    );
    expect(events.map((event) => event.json())).toEqual([{ echo: 'ndjson' }, { last: true }]);
  });

  test('`parse` runs on every line as it arrives', async () => {
    const events = await collect(readEvents(`${server.url}/values`, { parse: (line) => `<${line}>` }));
    expect(events.map((event) => event.json())).toEqual(['<{"a":1}>', '<"text">', '<42>', '<null>', '<[1,2]>']);
  });
});

describe('chunk boundaries', () => {
  test('NDJSON: a line split across chunks, a multi-byte character split inside it, CRLF, an empty line (the heartbeat), no final line break', async () => {
    const text = `{"price":"${EURO}5"}\r\n{"animal":"${OTTER}"}\n\n{"last":1}`;
    const bytes = new TextEncoder().encode(text);
    const euro = bytes.indexOf(0xe2);
    const otter = bytes.indexOf(0xf0);
    // Cut after the euro's first byte, after the otter's second and third bytes, and inside the last line.
    const events = await collect(readEvents(chunked('application/x-ndjson', cut(text, euro + 1, otter + 2, otter + 3, bytes.length - 3))));
    expect(events.map((event) => event.json())).toEqual([{ price: `${EURO}5` }, { animal: OTTER }, { last: 1 }]);
  });

  test('NDJSON: one byte per chunk', async () => {
    const text = `{"a":"${OTTER}${EURO}"}\n{"b":2}\n`;
    const bytes = new TextEncoder().encode(text);
    const events = await collect(readEvents(chunked('application/x-ndjson', Array.from(bytes, (byte) => Uint8Array.of(byte)))));
    expect(events.map((event) => event.json())).toEqual([{ a: `${OTTER}${EURO}` }, { b: 2 }]);
  });

  test('SSE: a multi-byte character and an event split across chunks', async () => {
    const text = `id: 1\ndata: ${OTTER} and ${EURO}\n\nevent: x\ndata: second\n\n`;
    const bytes = new TextEncoder().encode(text);
    const events = await collect(readEvents(chunked('text/event-stream', cut(text, bytes.indexOf(0xf0) + 1, bytes.indexOf(0xe2) + 2, bytes.length - 4))));
    expect(events.map(({ data, event, id }) => ({ data, event, id }))).toEqual([
      { data: `${OTTER} and ${EURO}`, event: undefined, id: '1' },
      { data: 'second', event: 'x', id: undefined },
    ]);
  });

  test('SSE: an event without its closing blank line at the end of the body is dropped, as EventSource does', async () => {
    const events = await collect(readEvents(chunked('text/event-stream', cut('data: whole\n\ndata: cut off\n'))));
    expect(events.map((event) => event.data)).toEqual(['whole']);
  });

  test.each([
    ['application/x-ndjson; charset=utf-8', (word: string) => `{"w":"${word}"}\n`],
    ['text/event-stream; charset=utf-8', (word: string) => `data: {"w":"${word}"}\n\n`],
  ])('over a real socket, %s: two writes with a pause, split inside a character', async (contentType, frame) => {
    const text = frame(`caf${EURO}`) + frame(OTTER);
    const bytes = Buffer.from(text);
    const split = bytes.indexOf(0xe2) + 1;
    const firstArrived = deferred<void>();
    const raw = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': contentType });
      res.write(bytes.subarray(0, split));
      // The rest only after the client has read the first part, so the two never travel in one packet.
      void firstArrived.promise.then(() => res.end(bytes.subarray(split)));
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const { port } = raw.address() as AddressInfo;
    let calls = 0;
    try {
      const events = await collect(
        readEvents(`http://127.0.0.1:${port}/`, {
          // A fetch wrapper that sees the body's first chunk go by, then lets the server send the rest.
          fetch: async (url, init) => {
            calls += 1;
            const response = await fetch(url, init);
            const reader = response.body!.getReader();
            const first = await reader.read();
            expect(first.value).toEqual(new Uint8Array(bytes.subarray(0, split)));
            firstArrived.resolve();
            const body = new ReadableStream<Uint8Array>({
              start(controller) {
                controller.enqueue(first.value!);
              },
              async pull(controller) {
                const next = await reader.read();
                if (next.done) controller.close();
                else controller.enqueue(next.value);
              },
            });
            return new Response(body, { status: response.status, headers: response.headers });
          },
        }),
      );
      expect(calls).toBe(1);
      expect(events.map((event) => event.json())).toEqual([{ w: `caf${EURO}` }, { w: OTTER }]);
    } finally {
      raw.closeAllConnections();
      await new Promise((resolve) => raw.close(resolve));
    }
  });
});

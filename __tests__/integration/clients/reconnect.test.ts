/**
 * Reconnection with the real clients that reconnect by themselves, `eventsource` 4.1.1 and `eventsource-client`
 * 1.2.0, and with the library's own `readEvents()`: a resumable route (`sseStream({ resume })`) whose connections
 * are dropped every few events, by `closeAllStreams({ retry })` (the graceful shutdown of an instance) and by
 * destroying the socket (a network drop). Each client must get every event exactly once, in order, then `done`,
 * resuming with the `Last-Event-ID` it sends. Prints how many times each client reconnected.
 *
 * The producer pushes event N only after the client has event N-1 for events it drops after, and after a drop it
 * waits until the client is back: every drop hits a live connection with the run still going. Run with
 * `npm run test:integration`.
 */
import type { Socket } from 'node:net';
import { EventSource } from 'eventsource';
import { createEventSource } from 'eventsource-client';
import express from 'express';
import { closeAllStreams, sseStream } from '../../../lib';
import { readEvents } from '../../../lib/client';
import { Turns } from '../../helpers/deferred';
import { listen, type TestServer } from '../../helpers/sse-client';

const EVENTS = 24;
/** The connection is dropped after every DROP_EVERY-th event: 4 drops for 24 events. */
const DROP_EVERY = 5;
const DONE = '[DONE]';
/** What the server tells every client (at open, and in closeAllStreams) to wait before it reconnects. */
const RETRY = 20;
const TIMEOUT = 20_000;

type DropMethod = 'closeAllStreams' | 'destroy';

interface Seen {
  values: number[];
  ids: string[];
}

/** A client reads `url` until `done`, calling `onValue` with each event's `n` and id as it arrives. */
type Reader = (url: string, onValue: (n: number, id: string) => void) => Promise<void>;

const READERS: Record<string, Reader> = {
  'eventsource 4.1.1': (url, onValue) =>
    new Promise((resolve, reject) => {
      const source = new EventSource(url);
      const timer = setTimeout(() => (source.close(), reject(new Error('timed out'))), TIMEOUT);
      source.onmessage = (event) => {
        if (event.data === DONE) {
          clearTimeout(timer);
          source.close();
          resolve();
          return;
        }
        onValue((JSON.parse(event.data as string) as { n: number }).n, event.lastEventId);
      };
      // `error` is how it reports a drop; it then reconnects by itself (after the server's `retry:`).
    }),
  'eventsource-client 1.2.0': (url, onValue) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => (source.close(), reject(new Error('timed out'))), TIMEOUT);
      const source = createEventSource({
        url,
        onMessage(message) {
          if (message.data === DONE) {
            clearTimeout(timer);
            source.close();
            resolve();
            return;
          }
          onValue((JSON.parse(message.data) as { n: number }).n, message.id ?? '');
        },
      });
    }),
  'readEvents()': async (url, onValue) => {
    // A minute: only the server's `retry:` lets it come back in time.
    for await (const event of readEvents<{ n: number }>(url, { done: DONE, reconnect: { delay: 60_000 } })) {
      onValue(event.json().n, event.id ?? '');
    }
  },
};

describe('real clients reconnect to a resumable run: every event once, in order, then done', () => {
  let server: TestServer;
  const sockets = new Set<Socket>();
  /** Requests per run key: the first starts the run, the others are reconnections. */
  const connections = new Map<string, number>();
  /** The Last-Event-ID each request of a key sent. */
  const resumedFrom = new Map<string, Array<string | undefined>>();
  /** Turn `key:n` resolves once the client has event n; turn `key:connection:c` once connection c has arrived. */
  const turns = new Turns<string>();

  beforeAll(async () => {
    const app = express();
    app.get(
      '/run/:method/:key',
      (req, _res, next) => {
        const key = String(req.params.key);
        const count = (connections.get(key) ?? 0) + 1;
        connections.set(key, count);
        resumedFrom.set(key, [...(resumedFrom.get(key) ?? []), req.get('last-event-id')]);
        turns.get(`${key}:connection:${count}`).resolve();
        next();
      },
      sseStream({ resume: { key: (req) => String(req.params.key) }, retry: RETRY, heartbeat: 20, done: DONE }),
      async (req, res) => {
        const key = String(req.params.key);
        const method = req.params.method as DropMethod;
        for (let n = 1; n <= EVENTS; n += 1) {
          await res.sse.send({ n });
          if (n % DROP_EVERY !== 0) continue;
          await turns.get(`${key}:${n}`).promise;
          const next = (connections.get(key) ?? 0) + 1;
          if (method === 'closeAllStreams') await closeAllStreams({ retry: RETRY });
          else for (const socket of sockets) socket.destroy();
          await turns.get(`${key}:connection:${next}`).promise;
        }
        await res.sse.close();
      },
    );
    server = await listen(app);
    server.server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
  });
  afterAll(() => server.close());

  const results: string[] = [];
  afterAll(() => console.log(`reconnections (${EVENTS} events, a drop after every ${DROP_EVERY}th):\n${results.join('\n')}`));

  const cases = Object.keys(READERS).flatMap((client) => (['closeAllStreams', 'destroy'] as const).map((method) => [client, method] as const));
  it.each(cases)('%s, dropped by %s', async (client, method) => {
    const key = `${client.replace(/\W+/g, '-')}-${method}`;
    const seen: Seen = { values: [], ids: [] };
    await READERS[client](`${server.url}/run/${method}/${key}`, (n, id) => {
      seen.values.push(n);
      seen.ids.push(id);
      turns.get(`${key}:${n}`).resolve();
    });
    const reconnections = (connections.get(key) ?? 0) - 1;
    results.push(`  ${client}, ${method}: ${reconnections} reconnections, ${seen.values.length} events`);
    expect(seen.values).toEqual(Array.from({ length: EVENTS }, (_, i) => i + 1));
    // The run's own ids, `<runId>.<seq>`, one per event and increasing: what each client resumed from.
    expect(new Set(seen.ids).size).toBe(EVENTS);
    expect(seen.ids.map((id) => Number(id.split('.').pop()))).toEqual([...seen.ids.map((id) => Number(id.split('.').pop()))].sort((a, b) => a - b));
    expect(reconnections).toBe(Math.floor((EVENTS - 1) / DROP_EVERY));
    // Each reconnection resumed from the last id the client had: the DROP_EVERY-th, 2×DROP_EVERY-th, ... event's.
    const dropped = Array.from({ length: reconnections }, (_, i) => seen.ids[(i + 1) * DROP_EVERY - 1]);
    expect(resumedFrom.get(key)).toEqual([undefined, ...dropped]);
  });
});

/**
 * The corpus (`__tests__/helpers/corpus.ts`: 46 events then `done`, with every kind of line break, leading blanks,
 * empty strings, non-ASCII, a 256 KB value, names, ids, `retry`, comments between events and a 20 ms heartbeat all
 * along) read by
 * the real clients users read streams with, each as its README shows:
 *
 * - `eventsource` 4.1.1 (the WHATWG EventSource for Node), `eventsource-client` 1.2.0,
 *   `@microsoft/fetch-event-source` 2.0.1 and `extended-eventsource` 2.1.0, in this process;
 * - Python's `httpx-sse` 0.4.3 (with `httpx` 0.28.1), in a virtualenv this test creates when missing, and plain
 *   `httpx` `iter_lines()` on the NDJSON form of the corpus.
 *
 * Each must yield exactly the expected (data, event type, last event id) sequence: what the EventSource spec yields,
 * except where a client's own code differs in a way no server bytes can avoid; there the test names the client's line
 * and asserts exactly that behaviour, and docs/clients.md lists it under "Known client quirks". No client may see a
 * message the server did not send: the blank line after a heartbeat, a comment or a `retry:` line was one for three
 * of them.
 *
 * Needs python3 with its venv module (`apt-get update && apt-get install -y python3 python3-venv`) and pip's access
 * to httpx and httpx-sse. Run with `npm run test:integration`.
 */
import { fetchEventSource } from '@microsoft/fetch-event-source';
import { EventSource } from 'eventsource';
import { createEventSource } from 'eventsource-client';
import express from 'express';
import { EventSource as ExtendedEventSource } from 'extended-eventsource';
import { sseStream } from '../../../lib';
import {
  CORPUS,
  CORPUS_HEARTBEAT,
  CORPUS_RETRY,
  CORPUS_VALUES,
  DONE,
  EXPECTED,
  playCorpus,
  type ExpectedEvent,
} from '../../helpers/corpus';
import { listen, openStream, type TestServer } from '../../helpers/sse-client';
import { ensurePythonClients, installFetchEventSourceGlobals, runHttpxClient } from './support';

/** What a client yielded for one event. */
interface Received {
  data: string;
  event: string;
  lastEventId: string;
}

const spec = (expected: ExpectedEvent): Received => ({ data: expected.data, event: expected.event, lastEventId: expected.lastEventId });
/** The event types of the corpus: an EventSource delivers a named event only to a listener for its name. */
const EVENT_TYPES = [...new Set(EXPECTED.map((event) => event.event))];
const TIMEOUT = 20_000;

/**
 * @microsoft/fetch-event-source 2.0.1 (lib/cjs/parse.js:78-83) and extended-eventsource 2.1.0
 * (dist/index.cjs:1725-1731) read a `data:` value with `decoder.decode(line.subarray(valueOffset))`, a fresh
 * TextDecoder call per line, which drops a U+FEFF that starts the line; and join lines with
 * `message.data = message.data ? message.data + '\n' + value : value`, which drops the empty lines data starts with
 * (`''` is falsy). The spec keeps both. This is that code, applied to what the spec yields.
 */
function joinedLikeFetchEventSource(data: string): string {
  return data
    .split('\n')
    .map((value) => (value.startsWith('\uFEFF') ? value.slice(1) : value))
    .reduce((joined, value) => (joined ? `${joined}\n${value}` : value), '');
}

describe('real SSE clients read the corpus exactly', () => {
  let server: TestServer;
  let python: string;
  let corpusUrl: string;

  beforeAll(async () => {
    const app = express();
    app.get('/corpus', sseStream({ heartbeat: CORPUS_HEARTBEAT, retry: CORPUS_RETRY, done: DONE }), (_req, res) => void playCorpus(res.sse));
    app.get('/corpus.ndjson', sseStream({ format: 'ndjson', heartbeat: CORPUS_HEARTBEAT, done: DONE }), (_req, res) => void playCorpus(res.sse));
    server = await listen(app);
    corpusUrl = `${server.url}/corpus`;
    python = await ensurePythonClients();
  }, 300_000);
  afterAll(() => server.close());

  it('the corpus: at least 40 events, with comments and heartbeats between them on the wire', async () => {
    expect(EXPECTED.length).toBeGreaterThanOrEqual(40);
    const client = await openStream(corpusUrl);
    await client.ended;
    const raw = client.raw();
    expect(client.events.map((event) => ({ data: event.data, event: event.event ?? 'message', id: event.id ?? '' }))).toEqual(
      EXPECTED.map(({ data, event, id }) => ({ data, event, id })),
    );
    expect(client.retries).toEqual([CORPUS_RETRY, CORPUS_RETRY]);
    const heartbeats = client.comments.filter((comment) => comment === 'ping').length;
    const comments = CORPUS.filter((step) => 'comment' in step).length;
    console.log(`corpus: ${EXPECTED.length} events, ${comments} comments, ${heartbeats} heartbeats, ${raw.length} characters`);
    expect(heartbeats).toBeGreaterThanOrEqual(5);
    // Nothing but an event ends with a blank line, so there are exactly as many blank lines as events.
    expect(raw.split('\n\n').length - 1).toBe(EXPECTED.length);
    expect(raw).not.toContain('\n\n\n');
  });

  it('eventsource 4.1.1 (WHATWG EventSource): every event; its lastEventId is only the event’s own id (quirk)', async () => {
    const received = await new Promise<Received[]>((resolve, reject) => {
      const source = new EventSource(corpusUrl);
      const events: Received[] = [];
      const timer = setTimeout(() => (source.close(), reject(new Error(`timed out with ${events.length} events`))), TIMEOUT);
      const onEvent = (event: MessageEvent): void => {
        events.push({ data: event.data as string, event: event.type, lastEventId: event.lastEventId });
        if (event.data === DONE) {
          clearTimeout(timer);
          source.close();
          resolve(events);
        }
      };
      for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
      source.onerror = (error) => (clearTimeout(timer), source.close(), reject(new Error(`eventsource error: ${error.message ?? 'unknown'}`)));
    });
    // Quirk: node_modules/eventsource/src/EventSource.ts:489 (dist/index.cjs:106) builds each MessageEvent with
    // `lastEventId: event.id || ''`, the id of that event alone (eventsource-parser reports per-event ids), where the
    // spec gives the source's last event id, carried over to events that have none. It does send the right
    // Last-Event-ID when it reconnects (its #lastEventId field is kept).
    expect(received).toEqual(EXPECTED.map((expected) => ({ ...spec(expected), lastEventId: expected.id })));
    expect(EXPECTED.filter((expected) => expected.id !== expected.lastEventId).length).toBeGreaterThan(0);
  });

  it('eventsource-client 1.2.0: exactly the spec’s sequence', async () => {
    const events: Received[] = [];
    // `lastEventId` read in onMessage, which runs as the event is parsed: the async iterator yields later, when the
    // client may already have read further events (and ids).
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => (source.close(), reject(new Error(`timed out with ${events.length} events`))), TIMEOUT);
      const source = createEventSource({
        url: corpusUrl,
        onMessage(message) {
          events.push({ data: message.data, event: message.event ?? 'message', lastEventId: source.lastEventId ?? '' });
          if (message.data === DONE) {
            clearTimeout(timer);
            source.close();
            resolve();
          }
        },
        onDisconnect: () => (clearTimeout(timer), source.close(), reject(new Error(`disconnected after ${events.length} events`))),
      });
    });
    expect(events).toEqual(EXPECTED.map(spec));
  });

  it('@microsoft/fetch-event-source 2.0.1: no empty messages; leading empty lines and a leading U+FEFF of data are lost (quirk)', async () => {
    const uninstall = installFetchEventSourceGlobals();
    const events: Received[] = [];
    const controller = new AbortController();
    // It exposes only each message's own `id`; the last event id is the one it keeps for its Last-Event-ID header
    // (lib/cjs/fetch.js: set by every non-empty `id:`).
    let lastEventId = '';
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => (controller.abort(), reject(new Error(`timed out with ${events.length} events`))), TIMEOUT);
        void fetchEventSource(corpusUrl, {
          fetch: globalThis.fetch,
          openWhenHidden: true,
          signal: controller.signal,
          onmessage(message) {
            if (message.id !== '') lastEventId = message.id;
            events.push({ data: message.data, event: message.event || 'message', lastEventId });
            if (message.data === DONE) {
              clearTimeout(timer);
              controller.abort();
              resolve();
            }
          },
          onerror(error) {
            clearTimeout(timer);
            reject(error instanceof Error ? error : new Error(String(error)));
            throw error; // no retry
          },
        }).catch(reject);
      });
    } finally {
      uninstall();
    }
    expect(events).toEqual(EXPECTED.map((expected) => ({ ...spec(expected), data: joinedLikeFetchEventSource(expected.data) })));
    expectQuirkAffects(['\n', '\n', '\n', '\n\n', '\nstarts with LF', '\nstarts with CRLF', '\nstarts with CR', '\ufeffstarts with U+FEFF', '\nnamed, starting with LF']);
  });

  it('extended-eventsource 2.1.0: no empty messages; leading empty lines and a leading U+FEFF of data are lost (quirk)', async () => {
    const received = await new Promise<Received[]>((resolve, reject) => {
      const source = new ExtendedEventSource(corpusUrl, { disableRetry: true, disableLogger: true });
      const events: Received[] = [];
      const timer = setTimeout(() => (source.close(), reject(new Error(`timed out with ${events.length} events`))), TIMEOUT);
      const onEvent = (event: MessageEvent): void => {
        events.push({ data: event.data as string, event: event.type, lastEventId: event.lastEventId });
        if (event.data === DONE) {
          clearTimeout(timer);
          source.close();
          resolve(events);
        }
      };
      for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
      source.onerror = () => (clearTimeout(timer), source.close(), reject(new Error(`extended-eventsource error after ${events.length} events`)));
    });
    expect(received).toEqual(EXPECTED.map((expected) => ({ ...spec(expected), data: joinedLikeFetchEventSource(expected.data) })));
  });

  it('httpx-sse 0.4.3 (Python): exactly the spec’s sequence', async () => {
    const received = await runHttpxClient<Received[]>(python, 'sse', corpusUrl);
    expect(received).toEqual(EXPECTED.map(spec));
  });

  it('httpx 0.28.1 iter_lines() (Python) on the NDJSON form: one JSON value per line, U+2028/U+2029/U+0085 included', async () => {
    const received = await runHttpxClient<Array<{ value?: unknown; broken?: string }>>(python, 'ndjson', `${server.url}/corpus.ndjson`);
    expect(received).toEqual([...CORPUS_VALUES, DONE].map((value) => ({ value })));
  });
});

/** The spec's data of exactly these corpus events differs from what the two clients' joining code gives. */
function expectQuirkAffects(data: string[]): void {
  const affected = EXPECTED.filter((expected) => joinedLikeFetchEventSource(expected.data) !== expected.data).map((expected) => expected.data);
  expect(affected).toEqual(data);
}

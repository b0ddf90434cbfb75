/**
 * Test helpers: a real HTTP server on 127.0.0.1 and a real client that reads the response with a spec-following SSE
 * parser (eventsource-parser), keeping every event, comment and raw byte it saw.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { createParser, type EventSourceMessage } from 'eventsource-parser';

export interface TestServer {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  server: http.Server;
  close(): Promise<void>;
}

/** Starts `app` on a free loopback port. `close()` also drops open connections, so a test never waits on a stream. */
export function listen(app: Express): Promise<TestServer> {
  return new Promise((resolve, reject) => {
    const server = http.createServer(app);
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        server,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}

export interface StreamClient {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Events in arrival order, as the EventSource spec decodes them. */
  events: EventSourceMessage[];
  comments: string[];
  /** `retry:` values the parser reported. */
  retries: number[];
  /** Every byte received, as text. */
  raw(): string;
  /** Resolves with the first event (from the start) matching `predicate`, or rejects after `timeoutMs`. */
  waitForEvent(predicate?: (event: EventSourceMessage, index: number) => boolean, timeoutMs?: number): Promise<EventSourceMessage>;
  /** Resolves once `count` events arrived. */
  waitForCount(count: number, timeoutMs?: number): Promise<EventSourceMessage[]>;
  /** Resolves when the response ends (or the connection drops), with everything received. */
  ended: Promise<void>;
  /** Destroys the connection, as a closed browser tab does. */
  abort(): void;
  /** Stops reading from the socket (the server's writes then back up), and lets it go on again. */
  pause(): void;
  resume(): void;
  response: http.IncomingMessage;
}

export interface OpenOptions {
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: string;
  /** Do not read the body at all until `resume()` (a client that stalls from the start). */
  paused?: boolean;
}

/** Opens a stream and resolves once the response's headers arrived. */
export function openStream(url: string, options: OpenOptions = {}): Promise<StreamClient> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false });
    request.once('error', reject);
    request.once('response', (response) => {
      const events: EventSourceMessage[] = [];
      const comments: string[] = [];
      const retries: number[] = [];
      const chunks: string[] = [];
      const listeners = new Set<() => void>();
      const notify = (): void => listeners.forEach((listener) => listener());
      const parser = createParser({
        onEvent: (event) => {
          events.push(event);
          notify();
        },
        onComment: (comment) => {
          comments.push(comment);
          notify();
        },
        onRetry: (retry) => retries.push(retry),
      });
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        chunks.push(chunk);
        parser.feed(chunk);
      });
      const ended = new Promise<void>((done) => {
        response.once('end', done);
        response.once('close', done);
        response.once('error', () => done());
      });
      void ended.then(notify);
      let finished = false;
      void ended.then(() => (finished = true));

      const waitUntil = <T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
        new Promise((done, fail) => {
          const attempt = (): boolean => {
            const value = check();
            if (value === undefined) return false;
            cleanup();
            done(value);
            return true;
          };
          const onChange = (): void => {
            if (!attempt() && finished) {
              cleanup();
              fail(new Error(`stream ended before ${what}; received ${JSON.stringify(chunks.join(''))}`));
            }
          };
          const timer = setTimeout(() => {
            cleanup();
            fail(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received ${JSON.stringify(chunks.join('').slice(-2000))}`));
          }, timeoutMs);
          const cleanup = (): void => {
            clearTimeout(timer);
            listeners.delete(onChange);
          };
          listeners.add(onChange);
          onChange();
        });

      if (options.paused) response.pause();
      resolve({
        status: response.statusCode ?? 0,
        headers: response.headers,
        events,
        comments,
        retries,
        raw: () => chunks.join(''),
        waitForEvent: (predicate = () => true, timeoutMs = 5000) =>
          waitUntil(() => events.find(predicate), timeoutMs, 'a matching event'),
        waitForCount: (count, timeoutMs = 5000) =>
          waitUntil(() => (events.length >= count ? events.slice(0, count) : undefined), timeoutMs, `${count} events`),
        ended,
        abort: () => request.destroy(),
        pause: () => response.pause(),
        resume: () => response.resume(),
        response,
      });
    });
    request.end(options.body);
  });
}

/** Parses a whole SSE body with the same spec-following parser. */
export function parseEvents(body: string): EventSourceMessage[] {
  const events: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => events.push(event) });
  parser.feed(body);
  return events;
}

/** Resolves after `ms` milliseconds. */
export const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every few milliseconds until it returns true, or rejects after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'a condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(5);
  }
}

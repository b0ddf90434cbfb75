/**
 * Error paths after the stream opened, with `sseErrorHandler()` mounted: a rejection from deep inside a promise chain,
 * an async generator or an EventEmitter; a hostile thrown value; a `serialize` that throws or returns a non-string; a
 * value JSON.stringify rejects, pushed with push() or awaited through send(); in SSE and in NDJSON; while the client is
 * behind. Whatever fails, the client gets everything pushed before it, then one plain `{"type":"error"}` event with a
 * safe message, and the response ends cleanly (a complete chunked response, not a dropped connection); nothing crashes
 * (no uncaught exception, no unhandled rejection, no other stream disturbed); and the next request on the same
 * keep-alive connection is served.
 *
 * A push of unserialisable data throws a TypeError at push, nothing of it reaches the wire, and the stream stays open;
 * a route that catches it goes on.
 *
 * error-handler.test.ts covers the handler's message policy (exposed 4xx, generic 5xx) with simple throws; this file is
 * about the ways work fails deep inside, and the serializer. Under Express 5 the async routes reject natively; under
 * Express 4 (jest.express4.config.js maps `express` to it) they are wrapped with `.catch(next)`, as the README tells
 * Express 4 users to do.
 */
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import { setImmediate as nextTurn } from 'node:timers/promises';
import express from 'express';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { sseErrorHandler, sseStream, type SseStream } from '../../lib';
import { deferred, pushUntilResponseFull } from '../helpers/deferred';
import { delay, eventually, listen, openStream, type TestServer } from '../helpers/sse-client';

/** Express 4 still exports `express.query`; Express 5 removed it. */
const EXPRESS_5 = !('query' in express);
const GENERIC = JSON.stringify({ type: 'error', message: 'Internal Server Error' });
/** Text that must never reach a client: it stands for what an error or a refused value holds. */
const SECRET = 'hunter2-secret-in-/srv/app/internal';

type AsyncHandler = (req: express.Request, res: express.Response) => Promise<void>;
/** Express 5 routes a rejected handler to error middleware itself; Express 4 needs the README's `.catch(next)`. */
const asyncRoute = (handler: AsyncHandler): express.RequestHandler =>
  EXPRESS_5
    ? (handler as express.RequestHandler)
    : (req, res, next) => {
        handler(req, res).catch((error: unknown) => next(error ?? new Error('Rejected promise')));
      };

class DeepError extends Error {
  constructor() {
    super(SECRET);
    this.name = 'DeepError';
  }
}

/** Three async layers, a Promise.all, a timer inside an immediate: the rejection starts at the bottom. */
async function layerOne(): Promise<void> {
  await nextTurn();
  await layerTwo();
}
async function layerTwo(): Promise<void> {
  await Promise.all([delay(1), layerThree(), Promise.resolve('fine')]);
}
function layerThree(): Promise<void> {
  return new Promise((_resolve, reject) => setImmediate(() => setTimeout(() => reject(new DeepError()), 1)));
}

async function* items(): AsyncGenerator<string> {
  yield 'item 0';
  await delay(1);
  yield 'item 1';
  await nextTurn();
  throw new DeepError();
}

function circular(): Record<string, unknown> {
  const value: Record<string, unknown> = { secret: SECRET };
  value.self = value;
  return value;
}

/** A value whose every touch throws: a thrown "error" that is hostile itself. */
const hostileThrown = (): unknown =>
  new Proxy(
    {},
    {
      get() {
        throw new Error(SECRET);
      },
      getPrototypeOf() {
        throw new Error(SECRET);
      },
      has() {
        throw new Error(SECRET);
      },
      ownKeys() {
        throw new Error(SECRET);
      },
      getOwnPropertyDescriptor() {
        throw new Error(SECRET);
      },
    },
  );

/** A serializer that refuses any object holding a `secret` key (a schema check, say) and is JSON otherwise. */
function strictSerialize(value: unknown): string {
  if (value !== null && typeof value === 'object' && 'secret' in value) throw new Error(`refused ${SECRET}`);
  return JSON.stringify(value);
}

interface Scenario {
  name: string;
  path: string;
  /** The data of the events the client must receive before the error event. */
  before: string[];
}

/** Every route below that fails, with what its client must receive first. */
const SCENARIOS: Scenario[] = [
  { name: 'a promise chain that rejects three layers down (Promise.all, setImmediate, setTimeout)', path: '/deep-chain', before: ['before'] },
  { name: 'an async generator that throws inside for await', path: '/generator', before: ['item 0', 'item 1'] },
  { name: "an EventEmitter 'error' that rejects an events.once() wait", path: '/emitter', before: ['before'] },
  { name: 'a rejection with undefined', path: '/reject-undefined', before: ['before'] },
  { name: 'a synchronous throw of a value whose every property access throws', path: '/hostile-throw', before: ['before'] },
  { name: 'a serialize that throws for one value, pushed and not caught', path: '/serialize-throws', before: ['{"ok":1}'] },
  { name: 'a serialize that returns a non-string', path: '/serialize-non-string', before: ['{"ok":1}'] },
  { name: 'a BigInt pushed and not caught', path: '/bigint', before: ['{"ok":1}'] },
  { name: 'a circular value awaited through send()', path: '/circular-send', before: ['{"ok":1}'] },
  { name: 'a value whose toJSON throws, pushed after an await', path: '/tojson-throws', before: ['{"ok":1}'] },
  { name: 'a value with a throwing getter, pushed from a timer callback through a rejected promise', path: '/getter-throws', before: ['{"ok":1}'] },
];

/** GET through `agent` (keep-alive), read to the end; `complete` is false when the connection was dropped. */
function get(url: string, agent: http.Agent): Promise<{ status: number; body: string; complete: boolean; localPort: number | undefined; contentType: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent }, (response) => {
      const localPort = response.socket.localPort;
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      const done = (): void =>
        resolve({ status: response.statusCode ?? 0, body, complete: response.complete, localPort, contentType: String(response.headers['content-type']) });
      response.once('end', done);
      response.once('close', done);
    });
    request.once('error', reject);
    request.setTimeout(10_000, () => request.destroy(new Error(`no end of ${url} after 10 s`)));
  });
}

function parse(body: string): EventSourceMessage[] {
  const events: EventSourceMessage[] = [];
  createParser({ onEvent: (event) => events.push(event) }).feed(body);
  return events;
}

describe('error paths after the stream opened', () => {
  let server: TestServer;
  /** Errors that got past sseErrorHandler() to the next error middleware. */
  const passedOn: unknown[] = [];
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown): void => void uncaught.push(error);
  /** The server side of each failing stream, by request id, to check how it closed. */
  const streams = new Map<string, SseStream>();
  /** A healthy stream every failing route pushes one event to before failing. */
  let witness: SseStream | undefined;
  let behind = { go: deferred(), thrown: deferred(), res: deferred<express.Response>() };
  const caught: { error?: unknown; bodyAtCatch?: number } = {};

  beforeAll(async () => {
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    const app = express();
    const sse = sseStream({ heartbeat: 0 });
    const strict = sseStream({ heartbeat: 0, serialize: strictSerialize });
    const register: express.RequestHandler = (req, res, next) => {
      streams.set(String(req.query.id), res.sse);
      witness?.push({ witness: req.path });
      next();
    };

    app.get(
      '/deep-chain',
      sse,
      register,
      asyncRoute(async (_req, res) => {
        res.sse.push('before');
        await layerOne();
      }),
    );
    app.get(
      '/generator',
      sse,
      register,
      asyncRoute(async (_req, res) => {
        for await (const item of items()) res.sse.push(item);
      }),
    );
    app.get(
      '/emitter',
      sse,
      register,
      asyncRoute(async (_req, res) => {
        const emitter = new EventEmitter();
        res.sse.push('before');
        setTimeout(() => emitter.emit('error', new DeepError()), 1);
        await once(emitter, 'done');
      }),
    );
    app.get(
      '/reject-undefined',
      sse,
      register,
      asyncRoute(async (_req, res) => {
        res.sse.push('before');
        await nextTurn();
        return Promise.reject(undefined);
      }),
    );
    app.get('/hostile-throw', sse, register, (_req, res) => {
      res.sse.push('before');
      throw hostileThrown();
    });
    app.get('/serialize-throws', strict, register, (_req, res) => {
      res.sse.push({ ok: 1 });
      res.sse.push({ secret: SECRET });
    });
    app.get(
      '/serialize-non-string',
      // Returns undefined (not a string) for objects holding a secret; JSON for everything else.
      sseStream({
        heartbeat: 0,
        serialize: (value) => (value !== null && typeof value === 'object' && 'secret' in value ? (undefined as unknown as string) : JSON.stringify(value)),
      }),
      register,
      (_req, res) => {
        res.sse.push({ ok: 1 });
        res.sse.push({ secret: SECRET });
      },
    );
    app.get('/bigint', sse, register, (_req, res) => {
      res.sse.push({ ok: 1 });
      res.sse.push({ secret: SECRET, count: 10n });
    });
    app.get(
      '/circular-send',
      sse,
      register,
      asyncRoute(async (_req, res) => {
        await res.sse.send({ ok: 1 });
        await res.sse.send(circular());
      }),
    );
    app.get(
      '/tojson-throws',
      sse,
      register,
      asyncRoute(async (_req, res) => {
        res.sse.push({ ok: 1 });
        await delay(1);
        res.sse.push({
          toJSON(): never {
            throw new Error(SECRET);
          },
        });
      }),
    );
    app.get(
      '/getter-throws',
      sse,
      register,
      asyncRoute(async (_req, res) => {
        res.sse.push({ ok: 1 });
        await new Promise<void>((resolve, reject) =>
          setTimeout(() => {
            try {
              res.sse.push({
                get secret(): string {
                  throw new Error(SECRET);
                },
              });
              resolve();
            } catch (error) {
              reject(error);
            }
          }, 1),
        );
      }),
    );
    // NDJSON: the same failure, and the error event is one more JSON line.
    app.get('/ndjson-bigint', sseStream({ heartbeat: 0, format: 'ndjson' }), register, (_req, res) => {
      res.sse.push('ok');
      res.sse.push({ secret: SECRET, count: 10n });
    });
    // A client that is behind: the test fills the response first, then lets the route push more and throw.
    app.get(
      '/behind',
      sse,
      register,
      asyncRoute(async (_req, res) => {
        behind.res.resolve(res);
        await behind.go.promise;
        for (let i = 0; i < 10; i += 1) res.sse.push(`late ${i} ${'w'.repeat(1024)}`);
        behind.thrown.resolve();
        throw new DeepError();
      }),
    );
    // The route catches the TypeError and goes on: nothing of the refused value was written, the stream is open.
    app.get('/caught', strict, (_req, res) => {
      res.sse.push({ ok: 1 });
      try {
        res.sse.push({ secret: SECRET });
      } catch (error) {
        caught.error = error;
      }
      res.sse.push('after');
      void res.sse.close();
    });
    app.get('/witness', sseStream({ heartbeat: 0 }), (_req, res) => {
      witness = res.sse;
    });
    app.get('/ok', (_req, res) => {
      res.send('ok');
    });
    app.use(sseErrorHandler());
    app.use((error: unknown, _req: express.Request, _res: express.Response, next: express.NextFunction) => {
      passedOn.push(error);
      next(error);
    });
    server = await listen(app);
  });
  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    await server.close();
  });
  afterEach(() => {
    expect(uncaught).toEqual([]);
    expect(passedOn).toEqual([]);
  });

  /** One failing request and then a plain one on the same keep-alive connection. */
  async function failThenServe(scenario: Scenario, id: string): Promise<string[]> {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const problems: string[] = [];
      const failed = await get(`${server.url}${scenario.path}?id=${id}`, agent);
      const events = parse(failed.body);
      const expected = [...scenario.before, GENERIC];
      if (failed.status !== 200) problems.push(`status ${failed.status}`);
      if (!failed.complete) problems.push('the response did not end cleanly (a dropped connection)');
      if (JSON.stringify(events.map((event) => event.data)) !== JSON.stringify(expected)) {
        problems.push(`received ${JSON.stringify(events.map((event) => event.data))}, expected ${JSON.stringify(expected)}`);
      }
      if (events.some((event) => event.event !== undefined || event.id !== undefined)) problems.push('an event carried a name or an id');
      if (failed.body.includes('hunter2') || failed.body.includes('/srv/app') || failed.body.includes('DeepError')) problems.push('internals reached the client');
      const stream = streams.get(id);
      if (stream === undefined || stream.closeReason !== 'close' || !stream.signal.aborted) {
        problems.push(`server side: closeReason ${String(stream?.closeReason)}, aborted ${String(stream?.signal.aborted)}`);
      }
      const next = await get(`${server.url}/ok`, agent);
      if (next.status !== 200 || next.body !== 'ok') problems.push(`the next request got ${next.status} ${JSON.stringify(next.body)}`);
      if (next.localPort !== failed.localPort) problems.push('the next request did not reuse the connection');
      return problems.map((problem) => `${scenario.name}: ${problem}`);
    } finally {
      agent.destroy();
    }
  }

  it.each(SCENARIOS.map((scenario) => [scenario.name, scenario] as const))(
    '%s: an error event after what was pushed, a clean end, the next request served',
    async (_name, scenario) => {
      expect(await failThenServe(scenario, `single-${scenario.path}`)).toEqual([]);
    },
  );

  it('NDJSON: the error is one more JSON line, after what was pushed, and the response ends cleanly', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const failed = await get(`${server.url}/ndjson-bigint?id=ndjson`, agent);
      expect(failed.contentType).toBe('application/x-ndjson; charset=utf-8');
      expect(failed.complete).toBe(true);
      expect(failed.body.split('\n')).toEqual(['"ok"', GENERIC, '']);
      expect(failed.body).not.toContain('hunter2');
      expect(streams.get('ndjson')?.closeReason).toBe('close');
      const next = await get(`${server.url}/ok`, agent);
      expect([next.status, next.body, next.localPort]).toEqual([200, 'ok', failed.localPort]);
    } finally {
      agent.destroy();
    }
  });

  it('a throw while the client is behind: every event pushed before it arrives whole, then the error event', async () => {
    behind = { go: deferred(), thrown: deferred(), res: deferred<express.Response>() };
    const client = await openStream(`${server.url}/behind?id=behind`, { paused: true });
    const res = await behind.res.promise;
    const filler = 'f'.repeat(1000);
    const filled = await pushUntilResponseFull(res, (i) => `${i} ${filler}`);
    behind.go.resolve();
    await behind.thrown.promise;
    await eventually(() => res.sse.closed, 5000, 'the error handler to close the stream');
    // Really behind: what was pushed, and the error event after it, still wait in the process for the client.
    expect(res.writableLength).toBeGreaterThan(0);
    expect(res.writableFinished).toBe(false);
    client.resume();
    await client.ended;
    expect(client.response.complete).toBe(true);
    const expected = [
      ...Array.from({ length: filled }, (_, i) => `${i} ${filler}`),
      ...Array.from({ length: 10 }, (_, i) => `late ${i} ${'w'.repeat(1024)}`),
      GENERIC,
    ];
    expect(client.events.length).toBe(expected.length);
    expect(client.events.map((event) => event.data).every((data, i) => data === expected[i])).toBe(true);
    expect(res.sse.closeReason).toBe('close');
  });

  it('a route that catches the TypeError goes on: the refused value left nothing on the wire, the stream stayed open', async () => {
    const client = await openStream(`${server.url}/caught`);
    await client.ended;
    expect(caught.error).toBeInstanceOf(TypeError);
    expect((caught.error as TypeError).cause).toBeInstanceOf(Error);
    expect(((caught.error as TypeError).cause as Error).message).toContain('refused');
    expect(client.events.map((event) => event.data)).toEqual(['{"ok":1}', 'after']);
    expect(client.raw()).not.toContain('hunter2');
    expect(client.response.complete).toBe(true);
  });

  it('60 failures of every kind at once: each client gets its own outcome, a healthy stream is undisturbed', async () => {
    const healthy = await openStream(`${server.url}/witness`);
    await eventually(() => witness !== undefined, 5000, 'the healthy stream to open');
    const runs = Array.from({ length: 60 }, (_, i) => SCENARIOS[i % SCENARIOS.length]);
    const problems = (await Promise.all(runs.map((scenario, i) => failThenServe(scenario, `concurrent-${i}`)))).flat();
    expect(problems).toEqual([]);
    // Every failing route pushed one event to the healthy stream before it failed; all arrived, and it is still open.
    await healthy.waitForCount(runs.length);
    expect(healthy.events.map((event) => (JSON.parse(event.data) as { witness: string }).witness).sort()).toEqual(runs.map((scenario) => scenario.path).sort());
    expect(witness?.closed).toBe(false);
    witness?.push('still here');
    await healthy.waitForEvent((event) => event.data === 'still here');
    healthy.abort();
  });
});

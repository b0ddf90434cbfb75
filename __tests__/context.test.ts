/**
 * currentStream(): inside a route behind sseStream() it is `res.sse` itself, across every await, timer and callback
 * of the route's work, and `currentStream()?.push()` from code that never sees req/res reaches that request's client.
 */
import { EventEmitter } from 'node:events';
import { stat } from 'node:fs';
import { Readable } from 'node:stream';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { currentStream, sseStream, type SseStream } from '../lib';
import { delay, eventually, listen, openStream, type StreamClient, type TestServer } from './helpers/sse-client';

const PROBES = [
  'middleware after await',
  'sync',
  'await',
  'setTimeout',
  'setImmediate',
  'nextTick',
  'queueMicrotask',
  'then',
  'own emitter',
  'shared emitter',
  'fs callback',
  'stream data',
  'async iterator',
  'deep async',
] as const;
type Probe = (typeof PROBES)[number];

interface Seen {
  expected: SseStream;
  seen: Map<Probe, SseStream | undefined>;
  done: Promise<void>;
}

const requests = new Map<string, Seen>();
const bus = new EventEmitter();
bus.setMaxListeners(0);

const jitter = (): number => Math.floor(Math.random() * 4);

/**
 * Code that never sees req or res: it finds the stream through the context only, pushes to it, and reports what it
 * found so the test can compare it with `res.sse`.
 */
function observe(id: string, probe: Probe): void {
  const stream = currentStream();
  requests.get(id)?.seen.set(probe, stream);
  stream?.push({ id, probe });
}

async function deepAsync(id: string): Promise<void> {
  await delay(jitter());
  await Promise.all([Promise.resolve(), delay(jitter())]);
  await new Promise<void>((resolve) => process.nextTick(resolve));
  observe(id, 'deep async');
}

async function* ticks(): AsyncGenerator<number> {
  for (let index = 0; index < 3; index += 1) {
    await delay(jitter());
    yield index;
  }
}

/** Resolves after `fn` ran inside `schedule`'s callback. */
function inCallback(schedule: (run: () => void) => void, fn: () => void): Promise<void> {
  return new Promise((resolve) =>
    schedule(() => {
      fn();
      resolve();
    }),
  );
}

async function routeWork(id: string): Promise<void> {
  observe(id, 'sync');
  await delay(jitter());
  observe(id, 'await');

  const ownEmitter = new EventEmitter();
  const viaOwnEmitter = new Promise<void>((resolve) =>
    ownEmitter.once('ready', () => {
      observe(id, 'own emitter');
      resolve();
    }),
  );
  setTimeout(() => ownEmitter.emit('ready'), jitter());

  const viaSharedEmitter = new Promise<void>((resolve) => {
    const listener = (to: string): void => {
      if (to !== id) return;
      bus.off('job', listener);
      observe(id, 'shared emitter');
      resolve();
    };
    bus.on('job', listener);
  });
  setImmediate(() => bus.emit('job', id));

  const viaStream = new Promise<void>((resolve, reject) => {
    const readable = Readable.from(['a', 'b']);
    readable.once('data', () => observe(id, 'stream data'));
    readable.on('end', resolve);
    readable.on('error', reject);
  });

  const viaIterator = (async () => {
    for await (const tick of ticks()) if (tick === 2) observe(id, 'async iterator');
  })();

  await Promise.all([
    inCallback((run) => setTimeout(run, jitter()), () => observe(id, 'setTimeout')),
    inCallback((run) => setImmediate(run), () => observe(id, 'setImmediate')),
    inCallback((run) => process.nextTick(run), () => observe(id, 'nextTick')),
    inCallback((run) => queueMicrotask(run), () => observe(id, 'queueMicrotask')),
    Promise.resolve()
      .then(() => delay(jitter()))
      .then(() => observe(id, 'then')),
    inCallback((run) => stat(__filename, () => run()), () => observe(id, 'fs callback')),
    viaOwnEmitter,
    viaSharedEmitter,
    viaStream,
    viaIterator,
    deepAsync(id),
  ]);
}

describe('currentStream() inside a route behind sseStream()', () => {
  let server: TestServer;

  beforeAll(async () => {
    const app = express();
    // An async middleware between sseStream() and the route: the context must survive it too.
    const asyncMiddleware = async (req: Request, res: Response, next: NextFunction): Promise<void> => {
      const id = String(req.params.id);
      let markDone = (): void => undefined;
      const done = new Promise<void>((resolve) => (markDone = resolve));
      requests.set(id, { expected: res.sse, seen: new Map(), done });
      res.locals.markDone = markDone;
      await delay(jitter());
      observe(id, 'middleware after await');
      next();
    };
    app.get('/context/:id', sseStream({ heartbeat: 0 }), asyncMiddleware, async (req, res) => {
      await routeWork(String(req.params.id));
      const markDone: unknown = res.locals.markDone;
      if (typeof markDone === 'function') markDone();
    });
    server = await listen(app);
  });
  afterAll(() => server.close());

  it('is res.sse itself across await, timers, callbacks, emitters, streams and deep code, for each of many concurrent requests', async () => {
    const ids = Array.from({ length: 30 }, (_, index) => `request-${index}`);
    const clients: StreamClient[] = await Promise.all(ids.map((id) => openStream(`${server.url}/context/${id}`)));
    await eventually(() => ids.every((id) => requests.has(id)), 5000, 'every route to start');
    await Promise.all(ids.map((id) => requests.get(id)?.done));

    const wrong: string[] = [];
    for (const id of ids) {
      const request = requests.get(id);
      if (request === undefined) throw new Error(`${id} never reached the route`);
      for (const probe of PROBES) {
        if (!request.seen.has(probe)) wrong.push(`${id}: probe "${probe}" never ran`);
        else if (request.seen.get(probe) !== request.expected) wrong.push(`${id}: probe "${probe}" saw another stream or none`);
      }
    }
    expect(wrong).toEqual([]);

    await Promise.all(ids.map((id) => requests.get(id)?.expected.close()));
    await Promise.all(clients.map((client) => client.ended));
  });

  it('currentStream()?.push() from code that never sees res reaches that request’s client, and only it', async () => {
    const ids = Array.from({ length: 30 }, (_, index) => `push-${index}`);
    const clients: StreamClient[] = await Promise.all(ids.map((id) => openStream(`${server.url}/context/${id}`)));
    await eventually(() => ids.every((id) => requests.has(id)), 5000, 'every route to start');
    await Promise.all(ids.map((id) => requests.get(id)?.done));
    await Promise.all(ids.map((id) => requests.get(id)?.expected.close()));
    await Promise.all(clients.map((client) => client.ended));

    const wrong: string[] = [];
    ids.forEach((id, index) => {
      const received = clients[index].events.map((event) => JSON.parse(event.data) as { id?: unknown; probe?: unknown });
      const foreign = received.filter((event) => event.id !== id);
      if (foreign.length > 0) wrong.push(`${id} received ${foreign.length} event(s) of other requests, e.g. ${JSON.stringify(foreign[0])}`);
      const probes = received.filter((event) => event.id === id).map((event) => String(event.probe));
      if (JSON.stringify([...probes].sort()) !== JSON.stringify([...PROBES].sort())) {
        wrong.push(`${id} received probes ${JSON.stringify([...probes].sort())}`);
      }
    });
    expect(wrong).toEqual([]);
  });
});

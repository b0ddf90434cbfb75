/**
 * Isolation at scale: 1,000 streams open at the same time on one server, every one logging through the same
 * module-level winston logger from deep inside nested async work (timers inside immediates inside ticks, promise
 * chains, EventEmitters that re-emit from setImmediate, a `for await` over an async generator that itself awaits and
 * logs, parallel branches, a per-request child logger). Every client receives exactly its own records (zero cross-talk,
 * zero lost lines), and a recording sibling transport receives every record logged, including those logged outside
 * any request, which reach no client at all.
 *
 * Context never leaks: not into work scheduled outside any request (a module-level timer, a server 'connection'
 * listener) while 1,000 streams are open, and not into the next request on a keep-alive connection, even while the
 * previous request's work goes on logging after its stream closed.
 *
 * log-isolation.test.ts covers 200 streams (and slow sibling transports); this file is the 1,000-stream scale run and
 * the keep-alive sequences at scale.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import { PassThrough } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import express from 'express';
import winston from 'winston';
import { currentStream, sseStream, SseTransport, type SseStream } from '../../lib';
import { deferred, type Deferred } from '../helpers/deferred';
import { delay, eventually, listen, openStream, parseEvents, type StreamClient, type TestServer } from '../helpers/sse-client';

const STREAMS = 1000;
/** Clients are connected this many at a time (the listen backlog is finite); all stay open until the end. */
const CONNECT_BATCH = 100;
const KEEPALIVE_SEQUENCES = 50;

type LogRecord = Record<string, unknown>;

// One logger for the whole app, as the README recommends: SseTransport plus a sibling that keeps every record.
const sibling: LogRecord[] = [];
const siblingStream = new PassThrough({ objectMode: true });
siblingStream.on('data', (record: LogRecord) => sibling.push(record));
const sseTransport = new SseTransport();
const siblingTransport = new winston.transports.Stream({ stream: siblingStream });
const logger = winston.createLogger({ level: 'info', transports: [sseTransport, siblingTransport] });
const loggerErrors: unknown[] = [];
logger.on('error', (error: unknown) => loggerErrors.push(error));
sseTransport.on('error', (error: unknown) => loggerErrors.push(error));

const drained = (): boolean =>
  logger.writableLength === 0 && logger.readableLength === 0 && sseTransport.writableLength === 0 && siblingTransport.writableLength === 0;

/** What work outside any request saw as the current stream; every sample must be `undefined`. */
const outsideSamples: Array<{ where: string; stream: SseStream | undefined }> = [];
let outsideRecords = 0;
function outside(where: string): void {
  outsideSamples.push({ where, stream: currentStream() });
  outsideRecords += 1;
  logger.info('outside', { origin: 'outside', where });
}

/** A module-level timer: it and everything it schedules run outside any request, while the streams are open. */
let ticking = false;
const moduleTimer = setInterval(() => {
  if (!ticking) return;
  outside('module interval');
  setImmediate(() => outside('immediate scheduled by the interval'));
  setTimeout(() => outside('timeout scheduled by the interval'), 0);
  void Promise.resolve().then(() => outside('promise scheduled by the interval'));
}, 2);

const jitter = (): number => Math.floor(Math.random() * 3);

/** The records each request logs: one per step, reached a different (nested) way. */
const STEPS = [
  'sync',
  'chain',
  'timer>immediate>tick>microtask',
  'emitter a',
  'emitter b (re-emitted from setImmediate)',
  'generator body 0',
  'for await 0',
  'generator body 1',
  'for await 1',
  'generator body 2',
  'for await 2',
  'branch timeout',
  'branch immediate>timeout',
  'branch child logger',
  'deep module code',
] as const;
type Step = (typeof STEPS)[number];

/** Module-level code that never sees req, res or the marker's stream: it only has the marker to log. */
async function deepModuleCode(marker: string): Promise<void> {
  await nextTurn();
  await new Promise<void>((resolve) => process.nextTick(resolve));
  await delay(jitter());
  logger.info('step', { marker, step: 'deep module code' satisfies Step });
}

async function* generator(marker: string): AsyncGenerator<number> {
  for (let i = 0; i < 3; i += 1) {
    if (i % 2 === 0) await delay(jitter());
    else await nextTurn();
    logger.info('step', { marker, step: `generator body ${i}` });
    yield i;
  }
}

/** One request's work: every step logs exactly once. */
async function work(marker: string): Promise<void> {
  const log = (step: Step): void => void logger.info('step', { marker, step });
  log('sync');
  await Promise.resolve()
    .then(() => delay(jitter()))
    .then(() => Promise.resolve())
    .then(() => log('chain'));
  await new Promise<void>((resolve) =>
    setTimeout(
      () =>
        setImmediate(() =>
          process.nextTick(() =>
            queueMicrotask(() => {
              log('timer>immediate>tick>microtask');
              resolve();
            }),
          ),
        ),
      jitter(),
    ),
  );
  const emitter = new EventEmitter();
  const emitted = new Promise<void>((resolve) => {
    emitter.on('a', () => {
      log('emitter a');
      setImmediate(() => emitter.emit('b'));
    });
    emitter.on('b', () => {
      log('emitter b (re-emitted from setImmediate)');
      resolve();
    });
  });
  setTimeout(() => emitter.emit('a'), jitter());
  await emitted;
  for await (const i of generator(marker)) logger.info('step', { marker, step: `for await ${i}` });
  const child = logger.child({ requestId: marker });
  await Promise.all([
    new Promise<void>((resolve) =>
      setTimeout(() => {
        log('branch timeout');
        resolve();
      }, jitter()),
    ),
    new Promise<void>((resolve) =>
      setImmediate(() =>
        setTimeout(() => {
          log('branch immediate>timeout');
          resolve();
        }, jitter()),
      ),
    ),
    delay(jitter()).then(() => child.info('step', { marker, step: 'branch child logger' satisfies Step })),
    deepModuleCode(marker),
  ]);
}

interface Running {
  stream: SseStream;
  done: Promise<void>;
}

/** GET that reads the whole body through `agent` (keep-alive), with the client port of the connection it used. */
function get(url: string, agent: http.Agent): Promise<{ status: number; body: string; localPort: number | undefined }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent }, (response) => {
      const localPort = response.socket.localPort;
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.once('end', () => resolve({ status: response.statusCode ?? 0, body, localPort }));
      response.once('error', reject);
    });
    request.once('error', reject);
  });
}

function parseObject(data: string): LogRecord {
  const value: unknown = JSON.parse(data);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`not a JSON object: ${data}`);
  return value as LogRecord;
}

describe('context isolation at scale', () => {
  let server: TestServer;
  const running = new Map<string, Running>();
  /** Released once every stream is open, from the test body (outside any request). */
  const go: Deferred<void> = deferred();
  const keepAlive = new Map<string, { lateRelease: Deferred<void>; lateLogged: Deferred<void>; bRelease: Deferred<void> }>();
  const keepAliveState = (id: string): { lateRelease: Deferred<void>; lateLogged: Deferred<void>; bRelease: Deferred<void> } => {
    let state = keepAlive.get(id);
    if (state === undefined) {
      state = { lateRelease: deferred(), lateLogged: deferred(), bRelease: deferred() };
      keepAlive.set(id, state);
    }
    return state;
  };
  const bOpened = new Set<string>();

  beforeAll(async () => {
    const app = express();
    app.get('/iso', sseStream({ heartbeat: 0 }), async (req, res) => {
      const marker = String(req.query.id);
      const done = (async () => {
        await go.promise;
        await work(marker);
      })();
      running.set(marker, { stream: res.sse, done });
      await done;
    });
    // Keep-alive sequences: A logs, closes its stream, and logs again later (after B opened on the same connection).
    app.get('/ka/a', sseStream({ heartbeat: 0 }), async (req, res) => {
      const id = String(req.query.id);
      const state = keepAliveState(id);
      logger.info('a own', { marker: `a-${id}`, port: req.socket.remotePort });
      await res.sse.close();
      await state.lateRelease.promise;
      await nextTurn();
      logger.info('a late', { marker: `a-${id}`, late: true });
      state.lateLogged.resolve();
    });
    app.get('/ka/plain', async (req, res) => {
      const seen: Record<string, boolean> = { sync: currentStream() === undefined };
      await delay(jitter());
      seen.afterAwait = currentStream() === undefined;
      seen.inImmediate = await new Promise<boolean>((resolve) => setImmediate(() => resolve(currentStream() === undefined)));
      seen.inTimeout = await new Promise<boolean>((resolve) => setTimeout(() => resolve(currentStream() === undefined), 0));
      logger.info('plain', { marker: `plain-${String(req.query.id)}` });
      res.json(seen);
    });
    app.get('/ka/b', sseStream({ heartbeat: 0 }), async (req, res) => {
      const id = String(req.query.id);
      const state = keepAliveState(id);
      logger.info('b own', { marker: `b-${id}` });
      bOpened.add(id);
      await state.bRelease.promise;
      logger.info('b later', { marker: `b-${id}` });
      await res.sse.close();
    });
    server = await listen(app);
    server.server.on('connection', () => {
      // A listener of the server runs outside any request; so does what it schedules.
      if (!ticking) return;
      outside('server connection listener');
      setTimeout(() => outside('timeout scheduled by the connection listener'), 0);
    });
  });
  afterAll(async () => {
    clearInterval(moduleTimer);
    await server.close();
  });

  it(
    `${STREAMS} concurrent streams on one logger: each client gets exactly its own ${STEPS.length} records; nothing outside a request reaches any`,
    async () => {
      const siblingBefore = sibling.length;
      ticking = true;
      const markers = Array.from({ length: STREAMS }, (_, i) => `m${i}`);
      const clients: StreamClient[] = [];
      for (let start = 0; start < STREAMS; start += CONNECT_BATCH) {
        const batch = markers.slice(start, start + CONNECT_BATCH);
        clients.push(...(await Promise.all(batch.map((marker) => openStream(`${server.url}/iso?id=${marker}`)))));
      }
      await eventually(() => running.size === STREAMS, 10_000, 'every route to start');
      const openAtRelease = [...running.values()].filter(({ stream }) => !stream.closed).length;
      // One promise, resolved from outside any request, releases all the work at once.
      go.resolve();
      await Promise.all([...running.values()].map(({ done }) => done));
      await eventually(drained, 15_000, 'the logger to hand every record to every transport');
      ticking = false;
      await Promise.all([...running.values()].map(({ stream }) => stream.close()));
      await Promise.all(clients.map((client) => client.ended));
      await eventually(drained, 5000, 'the logger to drain the last outside records');

      const problems: string[] = [];
      let delivered = 0;
      markers.forEach((marker, index) => {
        const events = clients[index].events.map((event) => parseObject(event.data));
        delivered += events.length;
        const foreign = events.filter((event) => event.marker !== marker);
        if (foreign.length > 0) problems.push(`${marker} received ${foreign.length} foreign record(s), e.g. ${JSON.stringify(foreign[0])}`);
        const steps = events.map((event) => String(event.step)).sort();
        const expected = [...STEPS].sort();
        if (JSON.stringify(steps) !== JSON.stringify(expected)) problems.push(`${marker} received steps ${JSON.stringify(steps)}`);
        const child = events.find((event) => event.step === 'branch child logger');
        if (child !== undefined && child.requestId !== marker) problems.push(`${marker}'s child-logger record carries ${String(child.requestId)}`);
        for (const event of events) if (event.type !== 'log' || event.level !== 'info') problems.push(`${marker}: malformed ${JSON.stringify(event)}`);
      });
      const records = sibling.slice(siblingBefore);
      const stepRecords = records.filter((record) => record.message === 'step');
      const outsideSeen = records.filter((record) => record.origin === 'outside');
      const outsideLeaks = outsideSamples.filter((sample) => sample.stream !== undefined);
      const outsideKinds = new Set(outsideSamples.map((sample) => sample.where));

      console.log(
        `isolation at scale: ${openAtRelease} streams open at once; ${delivered} log events delivered ` +
          `(expected ${STREAMS * STEPS.length}); sibling transport got ${stepRecords.length} step records and ` +
          `${outsideSeen.length} of ${outsideRecords} outside records; outside samples ${outsideSamples.length} ` +
          `(${outsideKinds.size} kinds), with a current stream: ${outsideLeaks.length}; problems: ${problems.length}`,
      );

      expect(openAtRelease).toBe(STREAMS);
      expect(problems.slice(0, 12)).toEqual([]);
      expect(delivered).toBe(STREAMS * STEPS.length);
      // Zero lost lines on the sibling too, and the records logged outside any request reached it (and no client).
      expect(stepRecords).toHaveLength(STREAMS * STEPS.length);
      expect(outsideSeen).toHaveLength(outsideRecords);
      expect(outsideRecords).toBeGreaterThan(0);
      expect(outsideKinds).toEqual(
        new Set([
          'module interval',
          'immediate scheduled by the interval',
          'timeout scheduled by the interval',
          'promise scheduled by the interval',
          'server connection listener',
          'timeout scheduled by the connection listener',
        ]),
      );
      expect(outsideLeaks.map((sample) => sample.where)).toEqual([]);
      expect(clients.every((client) => !client.raw().includes('"origin":"outside"'))).toBe(true);
      expect(loggerErrors).toEqual([]);
      expect(currentStream()).toBeUndefined();
    },
    60_000,
  );

  it(
    `${KEEPALIVE_SEQUENCES} keep-alive connections, each SSE -> plain -> SSE: no context carries over, not even from work that goes on after its stream closed`,
    async () => {
      const sequences = Array.from({ length: KEEPALIVE_SEQUENCES }, (_, i) => String(i));
      const results = await Promise.all(
        sequences.map(async (id) => {
          // One socket per sequence, so the three requests really share a connection.
          const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
          try {
            const state = keepAliveState(id);
            const a = await get(`${server.url}/ka/a?id=${id}`, agent);
            const plain = await get(`${server.url}/ka/plain?id=${id}`, agent);
            const b = get(`${server.url}/ka/b?id=${id}`, agent);
            await eventually(() => bOpened.has(id), 10_000, `stream b of sequence ${id} to open`);
            // A's work, whose stream is closed, logs again while B is open on the same connection.
            state.lateRelease.resolve();
            await state.lateLogged.promise;
            await eventually(drained, 10_000, 'the logger to drain');
            state.bRelease.resolve();
            const bResult = await b;
            return { id, a, plain, b: bResult };
          } finally {
            agent.destroy();
          }
        }),
      );
      const problems: string[] = [];
      let lateRecords = 0;
      for (const { id, a, plain, b } of results) {
        if (!(a.localPort === plain.localPort && plain.localPort === b.localPort)) {
          problems.push(`sequence ${id} did not reuse its connection: ${a.localPort}, ${plain.localPort}, ${b.localPort}`);
        }
        const aEvents = parseEvents(a.body).map((event) => parseObject(event.data));
        const bEvents = parseEvents(b.body).map((event) => parseObject(event.data));
        if (JSON.stringify(aEvents.map((event) => [event.message, event.marker])) !== JSON.stringify([['a own', `a-${id}`]])) {
          problems.push(`sequence ${id}: stream a received ${JSON.stringify(aEvents)}`);
        }
        if (JSON.stringify(bEvents.map((event) => [event.message, event.marker])) !== JSON.stringify([['b own', `b-${id}`], ['b later', `b-${id}`]])) {
          problems.push(`sequence ${id}: stream b received ${JSON.stringify(bEvents)}`);
        }
        const seen = JSON.parse(plain.body) as Record<string, boolean>;
        if (JSON.stringify(seen) !== JSON.stringify({ sync: true, afterAwait: true, inImmediate: true, inTimeout: true })) {
          problems.push(`sequence ${id}: the plain request saw a current stream: ${plain.body}`);
        }
        lateRecords += sibling.filter((record) => record.marker === `a-${id}` && record.late === true).length;
      }
      console.log(
        `keep-alive: ${results.length} connections x (SSE, plain, SSE); late records logged after their stream closed: ${lateRecords} ` +
          `(delivered to no client); problems: ${problems.length}`,
      );
      expect(problems).toEqual([]);
      // The late records were really logged (the sibling has them), and reached no stream.
      expect(lateRecords).toBe(KEEPALIVE_SEQUENCES);
      expect(loggerErrors).toEqual([]);
    },
    30_000,
  );
});

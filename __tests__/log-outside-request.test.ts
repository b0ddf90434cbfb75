/**
 * Outside a stream, SseTransport does nothing (but still calls winston back), and `currentStream()` is undefined:
 * at module level, in timers started outside any request, after a stream closed, and in the next request on the
 * same keep-alive connection.
 */
import { AsyncResource } from 'node:async_hooks';
import http from 'node:http';
import express from 'express';
import winston from 'winston';
import { currentStream, sseStream, SseTransport, type SseStream } from '../lib';
import { delay, eventually, listen, openStream, parseEvents, type TestServer } from './helpers/sse-client';

const transport = new SseTransport();
const logger = winston.createLogger({ level: 'info', transports: [transport] });
const errors: unknown[] = [];
logger.on('error', (error: unknown) => errors.push(error));
transport.on('error', (error: unknown) => errors.push(error));

/** Streams the server has open right now, so samples can tell whether a stream existed when they were taken. */
let openStreams = 0;

// Module level: no request exists, so there is no current stream, and this record has nowhere to go.
const atModuleLevel = currentStream();
logger.info('logged at module level', { origin: 'module' });

/** What a module-level timer (and the work it schedules) saw as the current stream, and whether a stream was open. */
const timerSamples: Array<{ where: string; stream: SseStream | undefined; streamsOpen: number }> = [];
let ticks = 0;
const moduleTimer = setInterval(() => {
  ticks += 1;
  const sample = (where: string): void => {
    timerSamples.push({ where, stream: currentStream(), streamsOpen: openStreams });
  };
  sample('interval callback');
  logger.info('logged from a module-level timer', { origin: 'module-timer', tick: ticks });
  setImmediate(() => sample('setImmediate scheduled by the timer'));
  setTimeout(() => sample('setTimeout scheduled by the timer'), 0);
  void Promise.resolve().then(() => sample('promise scheduled by the timer'));
}, 2);

interface OpenRoute {
  stream: SseStream;
  /** Runs `fn` in the route's async context, as a callback the route itself scheduled would. */
  inRequest: (fn: () => void) => void;
  port: number | undefined;
}

const openRoutes = new Map<string, OpenRoute>();
const closedRoutes = new Map<string, { port: number | undefined; release: () => void; logged: Promise<void> }>();

interface PlainReport {
  port: number | undefined;
  sync: boolean;
  afterAwait: boolean;
  inImmediate: boolean;
}

/** A minimal keep-alive-capable GET that reads the whole body. */
function get(url: string, agent: http.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.once('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.once('error', reject);
    });
    request.once('error', reject);
  });
}

function logEvents(body: string): Array<Record<string, unknown>> {
  return parseEvents(body).map((event) => {
    const value: unknown = JSON.parse(event.data);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`not a JSON object: ${event.data}`);
    return value as Record<string, unknown>;
  });
}

function isPlainReport(value: unknown): value is PlainReport {
  if (value === null || typeof value !== 'object') return false;
  const report = value as Record<string, unknown>;
  return typeof report.sync === 'boolean' && typeof report.afterAwait === 'boolean' && typeof report.inImmediate === 'boolean';
}

const drained = (): boolean => logger.writableLength === 0 && logger.readableLength === 0 && transport.writableLength === 0;

describe('SseTransport and currentStream() outside a request', () => {
  let server: TestServer;

  beforeAll(async () => {
    const app = express();
    // Logs one record of its own, then stays open until the test closes it.
    app.get('/sse/open', sseStream({ heartbeat: 0 }), (req, res) => {
      const id = String(req.query.id);
      openStreams += 1;
      res.on('close', () => (openStreams -= 1));
      logger.info('own record', { origin: 'own', id });
      openRoutes.set(id, {
        stream: res.sse,
        inRequest: AsyncResource.bind((fn: () => void) => fn()),
        port: req.socket.remotePort,
      });
    });
    // Logs, closes its stream, then, once the test says so, logs again from the same request's work.
    app.get('/sse/closing', sseStream({ heartbeat: 0 }), async (req, res) => {
      const id = String(req.query.id);
      logger.info('before close', { origin: 'before-close', id });
      let release = (): void => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let markLogged = (): void => undefined;
      const logged = new Promise<void>((resolve) => (markLogged = resolve));
      closedRoutes.set(id, { port: req.socket.remotePort, release, logged });
      await res.sse.close();
      await gate;
      logger.info('after close', { origin: 'after-close', id });
      markLogged();
    });
    // A plain JSON route: reports whether it saw any current stream, synchronously, after an await, in setImmediate.
    app.get('/plain', async (req, res) => {
      const sync = currentStream() === undefined;
      await delay(1);
      const afterAwait = currentStream() === undefined;
      const inImmediate = await new Promise<boolean>((resolve) => setImmediate(() => resolve(currentStream() === undefined)));
      const report: PlainReport = { port: req.socket.remotePort, sync, afterAwait, inImmediate };
      res.json(report);
    });
    server = await listen(app);
  });

  afterAll(async () => {
    clearInterval(moduleTimer);
    await server.close();
  });

  afterEach(() => {
    expect(errors).toEqual([]);
  });

  it('sends records logged outside any request to no client, while an open client gets only its own', async () => {
    const client = await openStream(`${server.url}/sse/open?id=outside`);
    await eventually(() => openRoutes.has('outside'), 5000, 'the route to start');
    const route = openRoutes.get('outside');
    if (route === undefined) throw new Error('route did not register');

    // From the test body: no request's context.
    logger.info('logged from the test body', { origin: 'test-body' });
    // From a timer started outside any request.
    await new Promise<void>((resolve) =>
      setTimeout(() => {
        logger.info('logged from a timer started in the test', { origin: 'test-timer' });
        resolve();
      }, 1),
    );
    // The module-level timer logs on every tick; let it tick a few times while the stream is open.
    const ticksBefore = ticks;
    await eventually(() => ticks >= ticksBefore + 3, 5000, 'the module-level timer to tick');
    // More records than the transport's buffer holds: if log() ever failed to call back for a record it skips,
    // winston would stop handing it records and the stream's own record below would never arrive.
    for (let index = 0; index < 40; index += 1) logger.warn('outside burst', { origin: 'burst', index });
    // Called directly, outside a stream: calls back at once and sends nothing.
    let calledBack = false;
    transport.log({ level: 'info', message: 'direct outside' }, () => (calledBack = true));
    expect(calledBack).toBe(true);

    route.inRequest(() => logger.info('own record, later', { origin: 'own-later', id: 'outside' }));
    await eventually(drained, 5000, 'the logger to drain');
    await route.stream.close();
    await client.ended;

    const received = client.events.map((event) => JSON.parse(event.data) as unknown);
    expect(received).toEqual([
      { type: 'log', level: 'info', message: 'own record', origin: 'own', id: 'outside' },
      { type: 'log', level: 'info', message: 'own record, later', origin: 'own-later', id: 'outside' },
    ]);
  });

  it('sends a record logged after its stream closed to no client, not even the next stream on the same connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await get(`${server.url}/sse/closing?id=first`, agent);
      expect(logEvents(first.body)).toEqual([{ type: 'log', level: 'info', message: 'before close', origin: 'before-close', id: 'first' }]);

      const second = get(`${server.url}/sse/open?id=second`, agent);
      await eventually(() => openRoutes.has('second'), 5000, 'the second stream to open');
      const closed = closedRoutes.get('first');
      const open = openRoutes.get('second');
      if (closed === undefined || open === undefined) throw new Error('routes did not register');
      // Same keep-alive connection: the closed stream's request and the open one share a socket.
      expect(open.port).toBe(closed.port);

      // The first request's work goes on after its stream closed and logs once more.
      closed.release();
      await closed.logged;
      // The pipeline still flows after the skipped record: the second stream's next record arrives.
      open.inRequest(() => logger.info('own record, later', { origin: 'own-later', id: 'second' }));
      await eventually(drained, 5000, 'the logger to drain');
      await open.stream.close();

      expect(logEvents((await second).body)).toEqual([
        { type: 'log', level: 'info', message: 'own record', origin: 'own', id: 'second' },
        { type: 'log', level: 'info', message: 'own record, later', origin: 'own-later', id: 'second' },
      ]);
    } finally {
      agent.destroy();
    }
  });

  it('has no current stream at module level, in the test body, or in a timer created at module level and its work', async () => {
    expect(atModuleLevel).toBeUndefined();
    expect(currentStream()).toBeUndefined();

    // Hold a stream open and let the module-level timer run while it is.
    const client = await openStream(`${server.url}/sse/open?id=timer`);
    await eventually(() => openRoutes.has('timer'), 5000, 'the route to start');
    const ticksBefore = ticks;
    await eventually(() => ticks >= ticksBefore + 5, 5000, 'the module-level timer to tick');
    await openRoutes.get('timer')?.stream.close();
    await client.ended;

    const whileOpen = timerSamples.filter((sample) => sample.streamsOpen > 0);
    expect(new Set(whileOpen.map((sample) => sample.where)).size).toBe(4);
    expect(timerSamples.filter((sample) => sample.stream !== undefined).map((sample) => sample.where)).toEqual([]);
    expect(currentStream()).toBeUndefined();
  });

  it('does not carry a stream into the next request on the same keep-alive connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const reports: unknown[] = [];
      const plain = async (): Promise<void> => {
        const response = await get(`${server.url}/plain`, agent);
        expect(response.status).toBe(200);
        reports.push(JSON.parse(response.body) as unknown);
      };
      await plain();
      await plain();
      // An SSE request on the same connection, whose stream the server closes itself.
      const sse = await get(`${server.url}/sse/closing?id=keepalive`, agent);
      expect(logEvents(sse.body)).toHaveLength(1);
      await plain();
      await plain();
      closedRoutes.get('keepalive')?.release();
      await closedRoutes.get('keepalive')?.logged;
      await plain();

      const sseRoute = closedRoutes.get('keepalive');
      for (const report of reports) {
        if (!isPlainReport(report)) throw new Error(`unexpected report ${JSON.stringify(report)}`);
        // Same connection as the SSE request, so the test really exercised connection reuse.
        expect(report.port).toBe(sseRoute?.port);
        expect(report).toEqual({ port: report.port, sync: true, afterAwait: true, inImmediate: true });
      }
      expect(reports).toHaveLength(5);
    } finally {
      agent.destroy();
    }
  });
});

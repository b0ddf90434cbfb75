/**
 * Outside a stream, sseDestination sends nothing (and the other destinations still get every line): at module
 * level, in the test body, in timers started outside any request, after a stream closed, and in the next request on
 * the same keep-alive connection.
 */
import { AsyncResource } from 'node:async_hooks';
import http from 'node:http';
import express from 'express';
import pino from 'pino';
import { sseStream, sseDestination, type SseStream } from '../../lib';
import { delay, eventually, listen, openStream, parseEvents, type TestServer } from '../helpers/sse-client';
import { parseObject, recorder } from './common';

const destination = sseDestination();
const sibling = recorder();
const logger = pino({ level: 'info', base: undefined, timestamp: false }, pino.multistream([sibling, destination]));

// Module level: no request exists, so this record has nowhere to go but the sibling.
logger.info({ origin: 'module' }, 'logged at module level');

let ticks = 0;
const moduleTimer = setInterval(() => {
  ticks += 1;
  logger.info({ origin: 'module-timer', tick: ticks }, 'logged from a module-level timer');
  setImmediate(() => logger.info({ origin: 'module-timer-immediate' }, 'scheduled by the timer'));
}, 2);

interface OpenRoute {
  stream: SseStream;
  /** Runs `fn` in the route's async context, as a callback the route itself scheduled would. */
  inRequest: (fn: () => void) => void;
  port: number | undefined;
}
const openRoutes = new Map<string, OpenRoute>();
const closedRoutes = new Map<string, { port: number | undefined; release: () => void; logged: Promise<void> }>();

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

const logEvents = (body: string): unknown[] => parseEvents(body).map((event) => parseObject(event.data));

describe('sseDestination outside a request', () => {
  let server: TestServer;

  beforeAll(async () => {
    const app = express();
    app.get('/sse/open', sseStream({ heartbeat: 0 }), (req, res) => {
      const id = String(req.query.id);
      logger.info({ origin: 'own', id }, 'own record');
      openRoutes.set(id, { stream: res.sse, inRequest: AsyncResource.bind((fn: () => void) => fn()), port: req.socket.remotePort });
    });
    // Logs, closes its stream, then, once the test says so, logs again from the same request's work.
    app.get('/sse/closing', sseStream({ heartbeat: 0 }), async (req, res) => {
      const id = String(req.query.id);
      logger.info({ origin: 'before-close', id }, 'before close');
      let release = (): void => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let markLogged = (): void => undefined;
      const logged = new Promise<void>((resolve) => (markLogged = resolve));
      closedRoutes.set(id, { port: req.socket.remotePort, release, logged });
      await res.sse.close();
      await gate;
      logger.info({ origin: 'after-close', id }, 'after close');
      markLogged();
    });
    server = await listen(app);
  });

  afterAll(async () => {
    clearInterval(moduleTimer);
    await server.close();
  });

  it('sends records logged outside any request to no client, while an open client gets only its own', async () => {
    const client = await openStream(`${server.url}/sse/open?id=outside`);
    await eventually(() => openRoutes.has('outside'), 5000, 'the route to start');
    const route = openRoutes.get('outside');
    if (route === undefined) throw new Error('route did not register');
    const before = sibling.lines.length;

    logger.info({ origin: 'test-body' }, 'logged from the test body');
    await new Promise<void>((resolve) =>
      setTimeout(() => {
        logger.info({ origin: 'test-timer' }, 'logged from a timer started in the test');
        resolve();
      }, 1),
    );
    const ticksBefore = ticks;
    await eventually(() => ticks >= ticksBefore + 3, 5000, 'the module-level timer to tick');
    for (let index = 0; index < 40; index += 1) logger.warn({ origin: 'burst', index }, 'outside burst');
    // Called directly, outside a stream: returns, sends nothing.
    expect(() => destination.write('{"level":30,"msg":"direct outside"}\n')).not.toThrow();

    route.inRequest(() => logger.info({ origin: 'own-later', id: 'outside' }, 'own record, later'));
    await delay(5);
    await route.stream.close();
    await client.ended;

    expect(client.events.map((event) => parseObject(event.data))).toEqual([
      { type: 'log', level: 'info', message: 'own record', origin: 'own', id: 'outside' },
      { type: 'log', level: 'info', message: 'own record, later', origin: 'own-later', id: 'outside' },
    ]);
    // The other destination got every one of them.
    const origins = sibling.lines.slice(before).map((line) => parseObject(line).origin);
    expect(origins).toEqual(expect.arrayContaining(['test-body', 'test-timer', 'module-timer', 'module-timer-immediate', 'burst', 'own-later']));
    expect(origins.filter((origin) => origin === 'burst')).toHaveLength(40);
    expect(sibling.lines.map((line) => parseObject(line).origin)).toContain('module');
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

      const before = sibling.lines.length;
      closed.release();
      await closed.logged;
      open.inRequest(() => logger.info({ origin: 'own-later', id: 'second' }, 'own record, later'));
      await open.stream.close();

      expect(logEvents((await second).body)).toEqual([
        { type: 'log', level: 'info', message: 'own record', origin: 'own', id: 'second' },
        { type: 'log', level: 'info', message: 'own record, later', origin: 'own-later', id: 'second' },
      ]);
      // The record written after close still reached the other destination.
      expect(sibling.lines.slice(before).map((line) => parseObject(line).origin)).toContain('after-close');
    } finally {
      agent.destroy();
    }
  });
});

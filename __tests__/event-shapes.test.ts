import express from 'express';
import pino from 'pino';
import winston from 'winston';
import { MemoryStore, sseDestination, sseErrorHandler, sseStream, SseTransport, type LogEvent } from '../lib';
import { wrapStore } from './helpers/stores';
import { listen, openStream, type TestServer } from './helpers/sse-client';

const logger = winston.createLogger({ level: 'debug', transports: [new SseTransport()] });
const pinoLogger = pino({ base: undefined, timestamp: false }, sseDestination());

/** Logs a few records (one of them marked for the mapper to drop or to choke on), then pushes and closes. */
async function logThenAnswer(res: express.Response): Promise<void> {
  logger.info('searching', { query: 'otters' });
  logger.warn('slow source', { drop: true });
  logger.info('drafting');
  res.sse.push({ type: 'answer' });
  await res.sse.close();
}

describe('sseStream({ logEvent, errorEvent }): the route decides what its log and error events look like', () => {
  let server: TestServer;
  const loggedWithoutThrowing: boolean[] = [];

  beforeAll(async () => {
    const app = express();
    app.get('/plain', sseStream({ heartbeat: 0 }), (_req, res) => logThenAnswer(res));
    app.get('/no-logs', sseStream({ heartbeat: 0, logEvent: false }), (_req, res) => logThenAnswer(res));
    const pinoRoute = async (_req: express.Request, res: express.Response): Promise<void> => {
      pinoLogger.info({ query: 'otters' }, 'searching');
      pinoLogger.warn({ drop: true }, 'slow source');
      res.sse.push({ type: 'answer' });
      await res.sse.close();
    };
    app.get('/pino-no-logs', sseStream({ heartbeat: 0, logEvent: false }), pinoRoute);
    app.get(
      '/pino-mapped',
      sseStream({ heartbeat: 0, logEvent: ({ level, message, drop }: LogEvent) => (drop === true ? undefined : { kind: 'log', text: `${String(level)}: ${String(message)}` }) }),
      pinoRoute,
    );
    app.get(
      '/mapped',
      sseStream({
        heartbeat: 0,
        logEvent: ({ level, message, drop }: LogEvent) => (drop === true ? undefined : { kind: 'log', text: `${String(level)}: ${String(message)}` }),
      }),
      (_req, res) => logThenAnswer(res),
    );
    app.get(
      '/mapper-throws',
      sseStream({
        heartbeat: 0,
        logEvent: (record: LogEvent) => {
          if (record.drop === true) throw new Error('the mapper choked');
          return record.message;
        },
      }),
      async (_req, res) => {
        try {
          await logThenAnswer(res);
          loggedWithoutThrowing.push(true);
        } catch {
          loggedWithoutThrowing.push(false);
        }
      },
    );
    const shaped = sseStream({ heartbeat: 0, errorEvent: ({ message, status }) => ({ type: 'error', errorText: message, status }) });
    app.get('/error-shaped', shaped, () => {
      throw Object.assign(new Error('Too many requests'), { status: 429, expose: true });
    });
    app.get('/error-secret', shaped, () => {
      throw new Error('db password hunter2');
    });
    app.get(
      '/error-mapper-throws',
      sseStream({
        heartbeat: 0,
        errorEvent: () => {
          throw new Error('the mapper choked');
        },
      }),
      () => {
        throw new Error('boom');
      },
    );
    const failingStore = wrapStore(new MemoryStore(), { read: () => Promise.reject(new Error('connection reset')) });
    app.get(
      '/store-fails',
      sseStream({
        heartbeat: 0,
        resume: { key: () => 'shapes-store-fails', store: failingStore, lease: 40 },
        errorEvent: ({ message, status }) => ({ error: { message, status } }),
      }),
      (_req, res) => void res.sse.push('never replayed'),
    );
    app.use(sseErrorHandler());
    server = await listen(app);
  });

  afterAll(() => server.close());

  async function dataOf(path: string): Promise<string[]> {
    const client = await openStream(`${server.url}${path}`);
    await client.ended;
    return client.events.map((event) => event.data);
  }

  test('by default, each record arrives as {"type":"log", level, message, ...fields}', async () => {
    expect(await dataOf('/plain')).toEqual([
      '{"type":"log","level":"info","message":"searching","query":"otters"}',
      '{"type":"log","level":"warn","message":"slow source","drop":true}',
      '{"type":"log","level":"info","message":"drafting"}',
      '{"type":"answer"}',
    ]);
  });

  test('logEvent: false sends no log events at all', async () => {
    expect(await dataOf('/no-logs')).toEqual(['{"type":"answer"}']);
  });

  test('a logEvent function shapes each record, and undefined drops it', async () => {
    expect(await dataOf('/mapped')).toEqual(['{"kind":"log","text":"info: searching"}', '{"kind":"log","text":"info: drafting"}', '{"type":"answer"}']);
  });

  test("pino's records through sseDestination() follow the route's logEvent too", async () => {
    expect(await dataOf('/pino-no-logs')).toEqual(['{"type":"answer"}']);
    expect(await dataOf('/pino-mapped')).toEqual(['{"kind":"log","text":"info: searching"}', '{"type":"answer"}']);
  });

  test('a logEvent that throws drops that record only; logger.info() does not throw', async () => {
    expect(await dataOf('/mapper-throws')).toEqual(['searching', 'drafting', '{"type":"answer"}']);
    expect(loggedWithoutThrowing).toEqual([true]);
  });

  test("errorEvent shapes sseErrorHandler()'s event, given the safe message and the error's status", async () => {
    expect(await dataOf('/error-shaped')).toEqual(['{"type":"error","errorText":"Too many requests","status":429}']);
    expect(await dataOf('/error-secret')).toEqual(['{"type":"error","errorText":"Internal Server Error","status":500}']);
  });

  test('an errorEvent that throws falls back to {"type":"error", message}', async () => {
    expect(await dataOf('/error-mapper-throws')).toEqual(['{"type":"error","message":"Internal Server Error"}']);
  });

  test('the error events the library writes itself (a store that failed) take the same shape', async () => {
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      expect(await dataOf('/store-fails')).toEqual(['{"error":{"message":"The stream is temporarily unavailable","status":503}}']);
    } finally {
      warn.mockRestore();
    }
  });

  test.each([
    [{ logEvent: true }, /^logEvent: expected false or a function of the log record, got boolean true$/],
    [{ logEvent: 'data-log' }, /^logEvent: expected false or a function/],
    [{ errorEvent: {} }, /^errorEvent: expected a function, got object$/],
  ])('%p is a TypeError naming the option', (options, message) => {
    expect(() => sseStream(options as never)).toThrow(TypeError);
    expect(() => sseStream(options as never)).toThrow(message);
  });
});

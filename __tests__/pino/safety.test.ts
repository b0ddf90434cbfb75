/**
 * sseDestination never throws and never blocks `logger.info()`; it adds no throw to pino's own and sends what pino
 * wrote, as valid JSON (a BigInt keeps its digits); a record larger than `maxBuffer` or a closed stream drops that
 * record only; the other destination gets every line; pino's redact, serializers, formatters, bindings, custom
 * levels and messageKey shape what the browser gets; `level` and `event` behave as documented.
 */
import { AsyncResource } from 'node:async_hooks';
import express from 'express';
import fc from 'fast-check';
import pino, { type Logger } from 'pino';
import { pinoHttp } from 'pino-http';
import type { EventSourceMessage } from 'eventsource-parser';
import { sseStream, sseDestination, type SseStream } from '../../lib';
import { eventually, listen, openStream, type StreamClient, type TestServer } from '../helpers/sse-client';
import { expectedEvent, parseObject, recorder, type Json, type Recorder } from './common';

/** A logger with sseDestination beside a recording destination that takes every level. */
function withSibling(options: pino.LoggerOptions = {}, destination = sseDestination()): { logger: Logger; sibling: Recorder } {
  const sibling = recorder();
  const logger = pino({ level: 'trace', ...options }, pino.multistream([{ stream: sibling, level: 'trace' }, destination]));
  return { logger, sibling };
}

const plain = withSibling();
const quiet = withSibling({ base: undefined, timestamp: false });
const redacted = withSibling({
  base: undefined,
  timestamp: false,
  redact: ['password', 'user.token', 'req.headers.authorization', 'req.headers.cookie', '*.secret'],
});
const removed = withSibling({ base: undefined, timestamp: false, redact: { paths: ['password', 'card.number'], remove: true } });
const shaped = withSibling({
  base: undefined,
  timestamp: false,
  serializers: { user: (user: { name: string; password: string }) => ({ name: user.name }) },
  formatters: {
    level: (label) => ({ level: label }),
    bindings: (bindings) => ({ service: 'api', ...bindings }),
    log: (object) => ({ ...object, formatted: true }),
  },
});
const severity = withSibling({ base: undefined, timestamp: false, formatters: { level: (label) => ({ severity: label.toUpperCase() }) } });
const custom = withSibling({ base: undefined, timestamp: false, customLevels: { audit: 35, verbose: 25 }, messageKey: 'text', msgPrefix: '[api] ' });
const nested = withSibling({ base: undefined, timestamp: false, nestedKey: 'payload', mixin: () => ({ mixed: 1 }) });
const hooked = withSibling({ base: undefined, timestamp: false, hooks: { streamWrite: (line) => line.replace('"msg":"', '"msg":"hooked: ') } });
// A hook that breaks the JSON: the browser gets nothing for that line, the other destination gets it as it is.
const broken = withSibling({ base: undefined, timestamp: false, hooks: { streamWrite: (line) => line.replace('}', '') } });
const debugLogger = pino({ level: 'debug', base: undefined, timestamp: false }, pino.multistream([
  { stream: sseDestination(), level: 'debug' },
  sseDestination({ level: 'debug', event: 'debug-log' }),
]));
const warnOnly = pino({ level: 'trace', base: undefined, timestamp: false }, pino.multistream([{ stream: sseDestination({ level: 40 }), level: 'trace' }]));
const auditOnly = pino({ level: 'trace', base: undefined, timestamp: false, customLevels: { audit: 35 } }, pino.multistream([
  { stream: sseDestination({ level: 'audit' }), level: 'trace' },
]));
// A bare destination in the array: pino.multistream reads its entry level from the destination's level property.
const bareDebug = pino({ level: 'debug', base: undefined, timestamp: false }, pino.multistream([sseDestination({ level: 'debug', event: 'bare' })]));
const named = pino({ base: undefined, timestamp: false }, sseDestination({ event: 'log-line' }));
const httpLog = withSibling({ redact: ['req.headers.authorization', 'req.headers.cookie'], base: undefined });
const http = pinoHttp({ logger: httpLog.logger, autoLogging: false });

const sessions = new Map<string, { stream: SseStream; inRequest: (fn: () => void) => void }>();
let sessionCount = 0;

interface Session {
  client: StreamClient;
  stream: SseStream;
  /** Runs `fn` in the route's async context, as a callback the route itself scheduled would. */
  inRequest(fn: () => void): void;
  /** Closes the stream (flushing it) and returns every event the client received. */
  finish(): Promise<EventSourceMessage[]>;
}

/** Logs in the request's context and reports whatever the log call threw. */
function logIn(session: Session, log: () => void): unknown {
  let thrown: unknown;
  session.inRequest(() => {
    try {
      log();
    } catch (error) {
      thrown = error ?? new Error('threw a nullish value');
    }
  });
  return thrown;
}

function withThrowingGetter(target: Json, key: string): Json {
  Object.defineProperty(target, key, {
    enumerable: true,
    get() {
      throw new Error('getter exploded');
    },
  });
  return target;
}

describe('sseDestination safety', () => {
  let server: TestServer;

  beforeAll(async () => {
    const app = express();
    const register = (req: express.Request, res: express.Response): void => {
      sessions.set(String(req.params.id), { stream: res.sse, inRequest: AsyncResource.bind((fn: () => void) => fn()) });
    };
    app.get('/session/:id', sseStream({ heartbeat: 0 }), register);
    app.get('/small/:id', sseStream({ heartbeat: 0, highWaterMark: 16 * 1024, maxBuffer: 64 * 1024 }), register);
    app.get('/ndjson/:id', sseStream({ heartbeat: 0, format: 'ndjson' }), register);
    app.get('/http/:id', http, sseStream({ heartbeat: 0 }), (req, res) => {
      register(req, res);
      req.log.info({ step: 'start' }, 'through req.log');
    });
    app.get('/resume/:id', sseStream({ heartbeat: 0, resume: { key: (req) => String(req.params.id) } }), register);
    server = await listen(app);
  });
  afterAll(() => server.close());

  async function openSession(route = 'session', headers?: Record<string, string>): Promise<Session> {
    sessionCount += 1;
    const id = String(sessionCount);
    const client = await openStream(`${server.url}/${route}/${id}`, { headers });
    await eventually(() => sessions.has(id), 5000, 'the route to start');
    const registered = sessions.get(id);
    if (registered === undefined) throw new Error('route did not register');
    return {
      client,
      stream: registered.stream,
      inRequest: registered.inRequest,
      finish: async () => {
        await registered.stream.close();
        await client.ended;
        return client.events;
      },
    };
  }

  it('adds no throw of its own: a throwing getter at the top level throws in pino itself, with or without it', async () => {
    const bare = pino({ base: undefined }, recorder());
    let pinoAlone: unknown;
    try {
      bare.info(withThrowingGetter({ ok: 1 }, 'bad'), 'top getter');
    } catch (error) {
      pinoAlone = error;
    }
    expect(pinoAlone).toBeInstanceOf(Error);

    const session = await openSession();
    const before = plain.sibling.lines.length;
    const thrown = logIn(session, () => plain.logger.info(withThrowingGetter({ ok: 1 }, 'bad'), 'top getter'));
    expect((thrown as Error).message).toBe((pinoAlone as Error).message);
    // pino threw before any destination saw a line; the next record goes through as usual.
    expect(logIn(session, () => plain.logger.info({ ok: 2 }, 'after'))).toBeUndefined();
    const events = (await session.finish()).map((event) => parseObject(event.data));
    expect(events.map((event) => event.message)).toEqual(['after']);
    expect(plain.sibling.lines.slice(before).map((line) => parseObject(line).msg)).toEqual(['after']);
  });

  it("sends what pino wrote for hostile values, as valid JSON: a BigInt keeps its digits, cycles and nested getters pino's way", async () => {
    const session = await openSession();
    const before = quiet.sibling.lines.length;
    const circular: Json = { name: 'a' };
    circular.self = circular;
    const hostile = [
      () => quiet.logger.info({ n: 2n ** 70n, nested: { m: -5n }, list: [1n] }, 'bigint'),
      () => quiet.logger.info({ a: circular }, 'circular'),
      () => quiet.logger.info({ holder: withThrowingGetter({ ok: 1 }, 'bad') }, 'nested getter'),
      () => quiet.logger.info({ toJSON: () => 'replaced', ok: 5 }, 'top-level toJSON'),
      () => quiet.logger.info({ sym: Symbol('value'), fn: () => 1, ok: 6 }, 'symbols and functions'),
      () => quiet.logger.info({ text: 'line\nbreak\r\n"quoted" \\ \u2028 \u0000' }, 'control\ncharacters "and" \\ quotes\r\n'),
      () => quiet.logger.info('%s and %d', 'format', 42),
      () => quiet.logger.info(42 as unknown as string),
      () => quiet.logger.info({ msg: 'message in the object' }),
      () => quiet.logger.info({ msg: 'object msg', other: 1 }, 'argument msg'),
      () => quiet.logger.info({ type: 'not-a-log', message: 'a field named message', level: 'fake' }, 'colliding keys'),
      () => quiet.logger.info({ '__proto__': { polluted: true }, nested: { type: 'inner', msg: 'inner msg' } }, 'nested reserved keys'),
      () => quiet.logger.error(new Error('boom')),
      () => quiet.logger.info({}),
    ];
    for (const log of hostile) expect(logIn(session, log)).toBeUndefined();
    const events = await session.finish();
    const lines = quiet.sibling.lines.slice(before);
    expect(lines).toHaveLength(hostile.length);
    expect(events).toHaveLength(hostile.length);
    events.forEach((event, index) => {
      const data = parseObject(event.data);
      expect(Object.keys(data)[0]).toBe('type');
      expect(data).toEqual(expectedEvent(lines[index], { level: index === 12 ? 'error' : 'info' }));
      expect(data).not.toHaveProperty('msg');
    });
    // The digits pino wrote, not a rounded double nor a string.
    expect(events[0].data).toContain('"n":1180591620717411303424');
    expect(events[0].data).toContain('"nested":{"m":-5},"list":[1]');
    expect(parseObject(events[10].data)).toEqual({ type: 'log', level: 'info', message: 'colliding keys' });
    expect(parseObject(events[9].data).message).toBe('argument msg');
    expect(parseObject(events[7].data).message).toBe(42);
    expect(parseObject(events[12].data)).toMatchObject({ type: 'log', level: 'error', message: 'boom', err: { type: 'Error', message: 'boom' } });
  });

  it('turns any record pino writes into its event (property: against the line the other destination got)', async () => {
    const key = fc.constantFrom('type', 'level', 'msg', 'message', 'time', 'a', 'b', '__proto__', 'with "quote"', 'ü');
    const value = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.bigInt(), fc.constant(undefined));
    const record = fc.dictionary(key, fc.oneof(value, fc.dictionary(key, value, { maxKeys: 3 })), { maxKeys: 6 });
    const message = fc.option(fc.string({ unit: 'binary-ascii' }), { nil: undefined });
    const levels = fc.constantFrom('info', 'warn', 'error', 'fatal') as fc.Arbitrary<'info' | 'warn' | 'error' | 'fatal'>;
    const session = await openSession();
    const samples: Array<{ line: string; level: string }> = [];
    await fc.assert(
      fc.asyncProperty(record, message, levels, async (object, text, level) => {
        const before = quiet.sibling.lines.length;
        expect(logIn(session, () => quiet.logger[level](object, text))).toBeUndefined();
        samples.push({ line: quiet.sibling.lines[before], level });
        return Promise.resolve();
      }),
      { numRuns: 300 },
    );
    const events = await session.finish();
    expect(events).toHaveLength(samples.length);
    events.forEach((event, index) => {
      expect(parseObject(event.data)).toEqual(expectedEvent(samples[index].line, { level: samples[index].level }));
    });
  });

  it('drops a record larger than maxBuffer and keeps the stream open; the next record and the other destination get through', async () => {
    const session = await openSession('small');
    const before = quiet.sibling.lines.length;
    const huge = 'x'.repeat(100 * 1024);
    expect(logIn(session, () => quiet.logger.info({ huge }, 'too large'))).toBeUndefined();
    expect(session.stream.closed).toBe(false);
    expect(logIn(session, () => quiet.logger.info({ size: 'fits' }, 'small enough'))).toBeUndefined();
    expect(logIn(session, () => quiet.logger.info({ big: 'y'.repeat(60 * 1024) }, 'just under maxBuffer'))).toBeUndefined();
    const events = (await session.finish()).map((event) => parseObject(event.data));
    expect(session.stream.closeReason).toBe('close');
    expect(events.map((event) => event.message)).toEqual(['small enough', 'just under maxBuffer']);
    expect(quiet.sibling.lines.slice(before).map((line) => parseObject(line).msg)).toEqual(['too large', 'small enough', 'just under maxBuffer']);
  });

  it('sends a 1 MB message whole under the default maxBuffer', async () => {
    const session = await openSession();
    const megabyte = 'm'.repeat(1024 * 1024);
    logIn(session, () => quiet.logger.info(megabyte));
    const events = await session.finish();
    expect(events).toHaveLength(1);
    expect(parseObject(events[0].data).message).toBe(megabyte);
  });

  it('drops records for a closed stream without throwing; the other destination still gets them', async () => {
    const session = await openSession();
    await session.finish();
    const before = quiet.sibling.lines.length;
    expect(logIn(session, () => quiet.logger.info('after close'))).toBeUndefined();
    expect(quiet.sibling.lines.slice(before)).toHaveLength(1);
    expect(session.client.events).toEqual([]);
  });

  it('never blocks logger.info(): a client that reads nothing still lets a burst of calls return at once', async () => {
    const session = await openSession();
    session.client.pause();
    const line = 'z'.repeat(1024);
    let elapsed = 0;
    session.inRequest(() => {
      const start = performance.now();
      for (let index = 0; index < 2000; index += 1) quiet.logger.info({ index, line }, 'burst');
      elapsed = performance.now() - start;
    });
    // 2 MB queued for a client that reads nothing: every call returned, none waited for the socket.
    expect(elapsed).toBeLessThan(2000);
    expect(session.stream.closed).toBe(false);
    session.client.resume();
    const events = await session.finish();
    expect(events).toHaveLength(2000);
    expect(events.map((event) => parseObject(event.data).index)).toEqual(Array.from({ length: 2000 }, (_, index) => index));
  });

  it('never throws on what it is handed directly: not a string, not JSON, not an object', async () => {
    const session = await openSession();
    const destination = sseDestination();
    const junk: unknown[] = [undefined, null, 42, {}, '', '\n', '{', '[1,2]', '"text"', '{"level":30,"msg":"unterminated', '{"level":30} trailing', 'not json at all'];
    session.inRequest(() => {
      for (const value of junk) expect(() => destination.write(value as string)).not.toThrow();
      // Without pino's metadata, the level is the line's own: a well-formed line is still sent, a debug one is not.
      destination.write('{"level":30,"msg":"no metadata","n":12345678901234567890}\n');
      destination.write('{"level":20,"msg":"debug, no metadata"}\n');
      destination.write('{"level":"warn","msg":"named level"}\n');
    });
    const events = await session.finish();
    expect(events.map((event) => event.data)).toEqual([
      '{"type":"log","level":"info","message":"no metadata","n":12345678901234567890}',
      '{"type":"log","level":"warn","message":"named level"}',
    ]);
  });

  it('never sends redacted paths to the browser; the other destination gets the censored line', async () => {
    const session = await openSession();
    const before = redacted.sibling.lines.length;
    logIn(session, () => {
      redacted.logger.info({ password: 'hunter2', user: { name: 'ada', token: 'tok-abc123' }, db: { secret: 's3cr3t' } }, 'login');
      redacted.logger.child({ user: { name: 'bob', token: 'tok-child-456' } }).warn('child binding');
      removed.logger.info({ password: 'pw-removed', card: { number: '4111111111111111', brand: 'visa' } }, 'paid');
    });
    const events = await session.finish();
    const raw = session.client.raw();
    for (const secret of ['hunter2', 'tok-abc123', 's3cr3t', 'tok-child-456', 'pw-removed', '4111111111111111']) expect(raw).not.toContain(secret);
    expect(parseObject(events[0].data)).toEqual({
      type: 'log',
      level: 'info',
      message: 'login',
      password: '[Redacted]',
      user: { name: 'ada', token: '[Redacted]' },
      db: { secret: '[Redacted]' },
    });
    expect(parseObject(events[1].data)).toMatchObject({ message: 'child binding', user: { name: 'bob', token: '[Redacted]' } });
    expect(parseObject(events[2].data)).toEqual({ type: 'log', level: 'info', message: 'paid', card: { brand: 'visa' } });
    expect(redacted.sibling.lines.slice(before).join('')).toContain('"password":"[Redacted]"');
  });

  it("never sends pino-http's redacted request headers to the browser", async () => {
    const session = await openSession('http', { authorization: 'Bearer very-secret-token', cookie: 'sid=cookie-secret' });
    await session.client.waitForCount(1);
    const events = await session.finish();
    expect(session.client.raw()).not.toContain('very-secret-token');
    expect(session.client.raw()).not.toContain('cookie-secret');
    const event = parseObject(events[0].data);
    expect(event).toMatchObject({ type: 'log', level: 'info', message: 'through req.log', step: 'start' });
    expect((event.req as { headers: Json }).headers).toMatchObject({ authorization: '[Redacted]', cookie: '[Redacted]' });
  });

  it('honours serializers, formatters (a level that is already a name, bindings, log) and child bindings', async () => {
    const session = await openSession();
    const before = shaped.sibling.lines.length;
    logIn(session, () => {
      shaped.logger.info({ user: { name: 'ada', password: 'pw' } }, 'serialized');
      shaped.logger.child({ requestId: 'r-1' }).warn('bound');
      severity.logger.error('severity instead of level');
    });
    const events = (await session.finish()).map((event) => parseObject(event.data));
    const [serialized, bound] = shaped.sibling.lines.slice(before);
    expect(serialized).toContain('"level":"info"');
    expect(events[0]).toEqual({ type: 'log', level: 'info', message: 'serialized', service: 'api', user: { name: 'ada' }, formatted: true });
    expect(events[0]).toEqual(expectedEvent(serialized));
    expect(events[1]).toEqual({ type: 'log', level: 'warn', message: 'bound', service: 'api', requestId: 'r-1', formatted: true });
    expect(events[1]).toEqual(expectedEvent(bound));
    // formatters.level returned another key: the level comes from pino's own number, the formatter's key stays.
    expect(events[2]).toEqual({ type: 'log', level: 'error', message: 'severity instead of level', severity: 'ERROR' });
  });

  it("names custom levels with the logger's own names and reads a custom messageKey, msgPrefix, nestedKey and mixin", async () => {
    const session = await openSession();
    logIn(session, () => {
      (custom.logger as unknown as Record<'audit' | 'verbose', pino.LogFn>).audit({ who: 'ada' }, 'custom level');
      (custom.logger as unknown as Record<'audit' | 'verbose', pino.LogFn>).verbose('below info: stays on the server');
      custom.logger.info({ msg: 'a field named msg' }, 'custom key');
      nested.logger.info({ a: 1, type: 'inner' }, 'nested');
      hooked.logger.info('written by a hook');
      broken.logger.info('broken by a hook');
    });
    expect(broken.sibling.lines).toEqual(['{"level":30,"msg":"broken by a hook"\n']);
    const events = (await session.finish()).map((event) => parseObject(event.data));
    expect(events).toEqual([
      { type: 'log', level: 'audit', message: '[api] custom level', who: 'ada' },
      { type: 'log', level: 'info', message: '[api] custom key', msg: 'a field named msg' },
      // The mixin merges into the logged object, so it is nested too.
      { type: 'log', level: 'info', message: 'nested', payload: { a: 1, type: 'inner', mixed: 1 } },
      { type: 'log', level: 'info', message: 'hooked: written by a hook' },
    ]);
  });

  it("sends info and above by default, even under a debug logger and entry; debug only with its own lower level", async () => {
    const session = await openSession();
    logIn(session, () => {
      debugLogger.debug('internal detail');
      debugLogger.info('progress');
      warnOnly.info('info, below 40');
      warnOnly.warn('warn, 40');
      (auditOnly as Logger<'audit'>).info('info, below audit');
      (auditOnly as Logger<'audit'>).audit('audit');
      bareDebug.debug('bare debug');
    });
    const events = await session.finish();
    const plainEvents = events.filter((event) => event.event === undefined).map((event) => parseObject(event.data).message);
    const verbose = events.filter((event) => event.event === 'debug-log').map((event) => parseObject(event.data).message);
    expect(plainEvents).toEqual(['progress', 'warn, 40', 'audit']);
    expect(verbose).toEqual(['internal detail', 'progress']);
    expect(events.filter((event) => event.event === 'bare').map((event) => parseObject(event.data).message)).toEqual(['bare debug']);
  });

  it('names its events with the event option; sends the same events in an NDJSON stream and in a resumable run', async () => {
    const session = await openSession();
    logIn(session, () => named.info('named'));
    const events = await session.finish();
    expect(events.map((event) => [event.event, event.data])).toEqual([['log-line', '{"type":"log","level":"info","message":"named"}']]);

    const ndjson = await openSession('ndjson');
    logIn(ndjson, () => quiet.logger.info({ n: 2n ** 64n }, 'as ndjson'));
    await ndjson.finish();
    expect(ndjson.client.raw()).toBe('{"type":"log","level":"info","message":"as ndjson","n":18446744073709551616}\n');

    const run = await openSession('resume');
    logIn(run, () => quiet.logger.info('in a run'));
    const runEvents = await run.finish();
    expect(runEvents.map((event) => parseObject(event.data))).toEqual([{ type: 'log', level: 'info', message: 'in a run' }]);
  });

  it('exposes a level that pino.multistream reads as the entry level, except a custom level name', () => {
    expect(sseDestination().level).toBe('info');
    expect(sseDestination({ level: 'debug' }).level).toBe('debug');
    expect(sseDestination({ level: 25 }).level).toBe(25);
    expect(sseDestination({ level: 'audit' }).level).toBeUndefined();
    expect(() => sseDestination().end()).not.toThrow();
  });

  it('throws a TypeError at creation for an event name holding CR, LF or NUL, or a level that is not one', () => {
    expect(() => sseDestination({ event: 'log\nline' })).toThrow(TypeError);
    expect(() => sseDestination({ event: 'log\rline' })).toThrow(TypeError);
    expect(() => sseDestination({ event: 'log\0line' })).toThrow(TypeError);
    expect(() => sseDestination({ level: '' })).toThrow(TypeError);
    expect(() => sseDestination({ level: Number.NaN })).toThrow(TypeError);
    expect(() => sseDestination({ level: null as unknown as string })).toThrow(TypeError);
    expect(() => sseDestination(null as unknown as object)).toThrow(TypeError);
    expect(() => sseDestination({ event: 'log-line', level: 'warn' })).not.toThrow();
  });
});

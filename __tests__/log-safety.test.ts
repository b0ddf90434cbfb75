/**
 * SseTransport never throws, never emits 'error', calls winston back synchronously and sends exactly one
 * `{ "type": "log", ... }` event per record, whatever the record holds; winston's internals never reach the wire;
 * its `level`, `event` options and a colorizing logger format behave as the contract says.
 */
import { AsyncResource } from 'node:async_hooks';
import { PassThrough } from 'node:stream';
import express from 'express';
import winston from 'winston';
import type { EventSourceMessage } from 'eventsource-parser';
import { sseStream, SseTransport, type LogRecord, type SseStream } from '../lib';
import { eventually, listen, openStream, type StreamClient, type TestServer } from './helpers/sse-client';

const LEVEL = Symbol.for('level');
const MESSAGE = Symbol.for('message');
const SPLAT = Symbol.for('splat');

/** A real winston Stream transport in object mode: keeps every record object it is handed, as is. */
function recordingSibling(): { transport: winston.transport; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const out = new PassThrough({ objectMode: true });
  out.on('data', (record: LogRecord) => records.push(record));
  return { transport: new winston.transports.Stream({ stream: out }), records };
}

/** A logger format that leaves the record alone (winston's default json() format would itself choke on some records). */
const passThrough = winston.format((info) => info)();

const errors: unknown[] = [];
function watch<T extends winston.Logger | winston.transport>(emitter: T): T {
  emitter.on('error', (error: unknown) => errors.push(error));
  return emitter;
}

// Nasty records: a pass-through format, SseTransport and a sibling that must still receive every record.
const safeSse = watch(new SseTransport());
const safeSibling = recordingSibling();
const safeLogger = watch(winston.createLogger({ level: 'silly', format: passThrough, transports: [safeSse, watch(safeSibling.transport)] }));

// winston's own formats fill the internal symbol fields.
const jsonSse = watch(new SseTransport());
const jsonSibling = recordingSibling();
const jsonLogger = watch(
  winston.createLogger({
    format: winston.format.combine(winston.format.splat(), winston.format.timestamp(), winston.format.json()),
    transports: [jsonSse, watch(jsonSibling.transport)],
  }),
);

const colorSse = watch(new SseTransport());
const colorSibling = recordingSibling();
const colorLogger = watch(winston.createLogger({ level: 'info', format: winston.format.colorize(), transports: [colorSse, watch(colorSibling.transport)] }));

const warnSse = watch(new SseTransport({ level: 'warn' }));
const levelLogger = watch(winston.createLogger({ level: 'silly', transports: [warnSse] }));

const namedSse = watch(new SseTransport({ event: 'log-line' }));
const namedLogger = watch(winston.createLogger({ level: 'info', transports: [namedSse] }));

// The transport's own format: one that throws on what it is given, and one that rebuilds the record from scratch.
const throwingFormatSse = watch(new SseTransport({ format: winston.format.json() }));
const throwingFormatSibling = recordingSibling();
const throwingFormatLogger = watch(
  winston.createLogger({ level: 'info', format: passThrough, transports: [throwingFormatSse, watch(throwingFormatSibling.transport)] }),
);
const rebuildingSse = watch(new SseTransport({ format: winston.format((info) => ({ level: info.level, message: `rebuilt ${String(info.message)}` }))() }));
const rebuildingLogger = watch(winston.createLogger({ level: 'info', transports: [rebuildingSse] }));

// A logger that emits debug records: SseTransport keeps them on the server unless its own level asks for them.
const defaultLevelSse = watch(new SseTransport());
const debugLevelSse = watch(new SseTransport({ level: 'debug', event: 'debug-log' }));
const debugLogger = watch(winston.createLogger({ level: 'debug', transports: [defaultLevelSse, debugLevelSse] }));

const everyTransport = [
  defaultLevelSse,
  debugLevelSse,
  safeSse,
  safeSibling.transport,
  jsonSse,
  jsonSibling.transport,
  colorSse,
  colorSibling.transport,
  warnSse,
  namedSse,
  throwingFormatSse,
  throwingFormatSibling.transport,
  rebuildingSse,
];
const everyLogger = [debugLogger, safeLogger, jsonLogger, colorLogger, levelLogger, namedLogger, throwingFormatLogger, rebuildingLogger];
const drained = (): boolean =>
  everyLogger.every((logger) => logger.writableLength === 0 && logger.readableLength === 0) &&
  everyTransport.every((transport) => transport.writableLength === 0);

const sessions = new Map<string, { stream: SseStream; inRequest: (fn: () => void) => void }>();
let sessionCount = 0;

interface Session {
  client: StreamClient;
  stream: SseStream;
  /** Runs `fn` in the route's async context, as a callback the route itself scheduled would. */
  inRequest(fn: () => void): void;
  /** Waits for every logger to drain, closes the stream (flushing it) and returns every event the client received. */
  finish(): Promise<EventSourceMessage[]>;
}

type Json = Record<string, unknown>;

function parseObject(data: string): Json {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    throw new Error(`event data is not JSON: ${data.slice(0, 200)}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`event data is not a JSON object: ${data.slice(0, 200)}`);
  return value as Json;
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

describe('SseTransport safety', () => {
  let server: TestServer;

  beforeAll(async () => {
    const app = express();
    app.get('/session/:id', sseStream({ heartbeat: 0 }), (req, res) => {
      sessions.set(String(req.params.id), { stream: res.sse, inRequest: AsyncResource.bind((fn: () => void) => fn()) });
    });
    server = await listen(app);
  });
  afterAll(() => server.close());

  afterEach(() => {
    // Never an 'error' on any logger or transport, whatever was logged.
    const seen = errors.splice(0);
    expect(seen).toEqual([]);
  });

  async function openSession(): Promise<Session> {
    sessionCount += 1;
    const id = String(sessionCount);
    const client = await openStream(`${server.url}/session/${id}`);
    await eventually(() => sessions.has(id), 5000, 'the route to start');
    const route = sessions.get(id);
    if (route === undefined) throw new Error('route did not register');
    return {
      client,
      stream: route.stream,
      inRequest: route.inRequest,
      finish: async () => {
        await eventually(drained, 5000, 'every logger to drain');
        await route.stream.close();
        await client.ended;
        return client.events;
      },
    };
  }

  interface NastyCase {
    name: string;
    level?: string;
    log(): void;
    check(event: Json): void;
  }

  const GETTER_ERROR = 'getter exploded';

  function withThrowingGetter(target: Json, key: string): Json {
    Object.defineProperty(target, key, {
      enumerable: true,
      get() {
        throw new Error(GETTER_ERROR);
      },
    });
    return target;
  }

  function nested(depth: number): Json {
    let value: Json = { bottom: true };
    for (let index = 0; index < depth; index += 1) value = { next: value };
    return value;
  }

  const MEGABYTE = 'x'.repeat(1024 * 1024);

  const nastyCases: NastyCase[] = [
    {
      name: 'a circular reference in a field arrives as "[Circular]"',
      log: () => {
        const a: Json = { name: 'a' };
        a.self = a;
        safeLogger.info('circular field', { a });
      },
      check: (event) => {
        expect(event.message).toBe('circular field');
        expect(event.a).toEqual({ name: 'a', self: '[Circular]' });
      },
    },
    {
      name: 'a record that refers to itself is delivered, the cycle cut with "[Circular]"',
      log: () => {
        const record: winston.LogEntry = { level: 'info', message: 'self reference' };
        record.me = record;
        safeLogger.log(record);
      },
      check: (event) => {
        expect(event.message).toBe('self reference');
        expect(JSON.stringify(event.me)).toContain('"[Circular]"');
      },
    },
    {
      name: 'BigInt values arrive as decimal strings',
      log: () => safeLogger.info('bigint', { n: 2n ** 70n, nested: { m: -5n }, list: [1n] }),
      check: (event) => {
        expect(event.message).toBe('bigint');
        expect(event.n).toBe('1180591620717411303424');
        expect(event.nested).toEqual({ m: '-5' });
        expect(event.list).toEqual(['1']);
      },
    },
    {
      name: 'a throwing getter in a nested object becomes an error marker string; the rest is delivered',
      log: () => safeLogger.info('nested getter', { holder: withThrowingGetter({ ok: 1 }, 'bad') }),
      check: (event) => {
        expect(event.message).toBe('nested getter');
        const holder = event.holder as Json;
        expect(holder.ok).toBe(1);
        expect(typeof holder.bad).toBe('string');
      },
    },
    {
      name: 'a throwing getter on the record itself becomes an error marker string; the rest is delivered',
      log: () => safeLogger.log(withThrowingGetter({ level: 'info', message: 'top getter', ok: 2 }, 'bad') as winston.LogEntry),
      check: (event) => {
        expect(event.message).toBe('top getter');
        expect(event.ok).toBe(2);
        expect(typeof event.bad).toBe('string');
      },
    },
    {
      name: 'a toJSON that throws, in a field, becomes an error marker string',
      log: () =>
        safeLogger.info('nested toJSON', {
          obj: {
            toJSON(): never {
              throw new Error('toJSON exploded');
            },
          },
          ok: 3,
        }),
      check: (event) => {
        expect(event.message).toBe('nested toJSON');
        expect(event.ok).toBe(3);
        expect(typeof event.obj).toBe('string');
      },
    },
    {
      name: 'a toJSON that throws, on the record itself, still yields a { type: "log" } event',
      log: () =>
        safeLogger.info('top-level toJSON', {
          toJSON(): never {
            throw new Error('toJSON exploded');
          },
          ok: 4,
        }),
      check: (event) => {
        expect(event.message).toBe('top-level toJSON');
        expect(event.ok).toBe(4);
      },
    },
    {
      name: 'a toJSON on the record itself cannot replace the event',
      log: () => safeLogger.info('top-level replacing toJSON', { toJSON: () => 'replaced', ok: 5 }),
      check: (event) => {
        expect(event.message).toBe('top-level replacing toJSON');
        expect(event.ok).toBe(5);
      },
    },
    {
      // Found by fast-check: the throwing field sends the record down the safe path, where the `toJSON` field's own
      // `toJSON` returned a function that then became the copy's `toJSON` and replaced the event.
      name: 'a field named toJSON whose toJSON returns a function cannot replace the event, even beside a throwing field',
      log: () =>
        safeLogger.info('function from toJSON', {
          toJSON: { toJSON: () => () => 'replaced' },
          bad: {
            toJSON(): never {
              throw new Error('toJSON exploded');
            },
          },
          ok: 7,
        }),
      check: (event) => {
        expect(event.type).toBe('log');
        expect(event.message).toBe('function from toJSON');
        expect(event.ok).toBe(7);
        expect(event).not.toHaveProperty('toJSON');
        expect(typeof event.bad).toBe('string');
      },
    },
    {
      name: 'Symbols as values are delivered safely',
      log: () => safeLogger.info('symbols', { sym: Symbol('value'), list: [Symbol('item')], ok: 6 }),
      check: (event) => {
        expect(event.message).toBe('symbols');
        expect(event.ok).toBe(6);
        expect(['undefined', 'string']).toContain(typeof event.sym);
      },
    },
    {
      name: 'a Symbol as the message is delivered safely',
      log: () => safeLogger.info(Symbol('only a symbol')),
      check: (event) => {
        expect(['undefined', 'string']).toContain(typeof event.message);
      },
    },
    {
      name: 'a 1 MB message arrives whole',
      log: () => safeLogger.info(MEGABYTE, { ok: 7 }),
      check: (event) => {
        expect(event.message).toBe(MEGABYTE);
        expect(event.ok).toBe(7);
      },
    },
    {
      name: 'an object nested 100,000 levels deep (which JSON.stringify cannot encode) is delivered',
      log: () => safeLogger.info('deep', { deep: nested(100_000), ok: 8 }),
      check: (event) => {
        expect(event.message).toBe('deep');
        expect(event.ok).toBe(8);
      },
    },
    {
      name: 'a Proxy whose keys cannot be listed is delivered, the record kept',
      log: () =>
        safeLogger.info('hostile proxy', {
          hostile: new Proxy(
            {},
            {
              ownKeys(): never {
                throw new Error('ownKeys exploded');
              },
            },
          ),
          ok: 9,
        }),
      check: (event) => {
        expect(event.message).toBe('hostile proxy');
        expect(event.ok).toBe(9);
      },
    },
    {
      name: 'an Error logged directly keeps its message',
      level: 'error',
      log: () => safeLogger.error(new Error('boom')),
      check: (event) => {
        expect(event.message).toBe('boom');
      },
    },
  ];

  it.each(nastyCases)('$name: one event, no throw, synchronous callback', async ({ level = 'info', log, check }) => {
    const session = await openSession();
    const before = safeSibling.records.length;
    expect(logIn(session, log)).toBeUndefined();
    await eventually(drained, 5000, 'every logger to drain');

    // The sibling transport was handed the very record SseTransport was; it still got it (and only it).
    const records = safeSibling.records.slice(before);
    expect(records).toHaveLength(1);
    // Handed that record directly, log() neither throws nor defers winston's callback.
    let calledBack = false;
    expect(() => safeSse.log(records[0], () => (calledBack = true))).not.toThrow();
    expect(calledBack).toBe(true);

    // One event per record: one through the logger, one from the direct call, and they agree.
    const events = await session.finish();
    expect(events).toHaveLength(2);
    expect(events.map((event) => event.event)).toEqual([undefined, undefined]);
    const [viaLogger, direct] = events.map((event) => parseObject(event.data));
    expect(direct).toEqual(viaLogger);
    expect(viaLogger.type).toBe('log');
    expect(viaLogger.level).toBe(level);
    check(viaLogger);
  });

  it('delivers every nasty record, in order, to both SseTransport and a sibling transport', async () => {
    const session = await openSession();
    const before = safeSibling.records.length;
    for (const { log } of nastyCases) expect(logIn(session, log)).toBeUndefined();
    await eventually(drained, 5000, 'every logger to drain');
    const siblingRecords = safeSibling.records.slice(before);
    expect(siblingRecords).toHaveLength(nastyCases.length);

    const events = await session.finish();
    expect(events).toHaveLength(nastyCases.length);
    const levels = events.map((event) => parseObject(event.data).level);
    expect(levels).toEqual(nastyCases.map(({ level = 'info' }) => level));
    expect(events.map((event) => parseObject(event.data).type)).toEqual(nastyCases.map(() => 'log'));
  });

  it('skips a record logged after its stream closed: no throw, no event anywhere, callback still called', async () => {
    const closedSession = await openSession();
    const other = await openSession();
    await closedSession.stream.close();
    await closedSession.client.ended;
    const before = safeSibling.records.length;
    expect(logIn(closedSession, () => safeLogger.info('after close', { ok: 10 }))).toBeUndefined();
    await eventually(drained, 5000, 'every logger to drain');
    const records = safeSibling.records.slice(before);
    expect(records).toHaveLength(1);

    let calledBack = false;
    expect(() => safeSse.log(records[0], () => (calledBack = true))).not.toThrow();
    expect(calledBack).toBe(true);

    // The pipeline still flows, and the other stream receives its own record only.
    expect(logIn(other, () => safeLogger.info('other', { ok: 11 }))).toBeUndefined();
    const events = await other.finish();
    expect(events.map((event) => parseObject(event.data))).toEqual([{ type: 'log', level: 'info', message: 'other', ok: 11 }]);
    expect(closedSession.client.events).toEqual([]);
  });

  it('calls winston back before log() returns, for records that were never stamped by a logger', async () => {
    const record = (): LogRecord => ({ level: 'info', message: 'not from a logger', [LEVEL]: 'info' });
    let outside = false;
    expect(() => safeSse.log(record(), () => (outside = true))).not.toThrow();
    expect(outside).toBe(true);

    const session = await openSession();
    let inside = false;
    let thrown: unknown;
    session.inRequest(() => {
      try {
        safeSse.log(record(), () => (inside = true));
      } catch (error) {
        thrown = error;
      }
    });
    expect(thrown).toBeUndefined();
    expect(inside).toBe(true);
    await session.finish();
  });

  it("never puts winston's internal symbol fields on the wire", async () => {
    const session = await openSession();
    const before = jsonSibling.records.length;
    logIn(session, () => jsonLogger.info('hello %s', 'world', { extra: 1, [Symbol('private')]: 'hidden value' }));
    await eventually(drained, 5000, 'every logger to drain');
    const [record] = jsonSibling.records.slice(before);
    // The record really carried winston's internals.
    expect(typeof record[MESSAGE]).toBe('string');
    expect(record[SPLAT]).toBeDefined();
    expect(record[LEVEL]).toBe('info');

    const events = await session.finish();
    expect(events).toHaveLength(1);
    const event = parseObject(events[0].data);
    expect(Object.keys(event).sort()).toEqual(['extra', 'level', 'message', 'timestamp', 'type']);
    expect(event).toEqual({ type: 'log', level: 'info', message: 'hello world', extra: 1, timestamp: record.timestamp });
    const raw = session.client.raw();
    expect(raw).not.toContain(String(record[MESSAGE]));
    expect(raw).not.toContain('hidden value');
    expect(raw).not.toContain('Symbol(');
    expect(raw).not.toContain('"world"');
  });

  it('always sends type "log", even when the record has a field named type', async () => {
    const session = await openSession();
    logIn(session, () => safeLogger.info('typed field', { type: 'error', ok: 12 }));
    logIn(session, () => safeLogger.log({ level: 'warn', message: 'typed record', type: 'not-a-log' }));
    const events = (await session.finish()).map((event) => parseObject(event.data));
    expect(events).toHaveLength(2);
    expect(events.map((event) => event.type)).toEqual(['log', 'log']);
    expect(events.map((event) => event.message)).toEqual(['typed field', 'typed record']);
  });

  it('sends the uncolorized level when the logger colorizes', async () => {
    const session = await openSession();
    const before = colorSibling.records.length;
    logIn(session, () => colorLogger.info('painted'));
    logIn(session, () => colorLogger.warn('painted too'));
    logIn(session, () => colorLogger.error('and red'));
    await eventually(drained, 5000, 'every logger to drain');
    // The format really painted the level the transports were handed.
    expect(colorSibling.records.slice(before).every((record) => String(record.level).includes('\u001b['))).toBe(true);
    const events = (await session.finish()).map((event) => parseObject(event.data));
    expect(events.map((event) => event.level)).toEqual(['info', 'warn', 'error']);
    expect(session.client.raw()).not.toContain('\\u001b');
  });

  it("filters by the transport's own level option", async () => {
    const session = await openSession();
    logIn(session, () => {
      levelLogger.silly('silly');
      levelLogger.debug('debug');
      levelLogger.info('info');
      levelLogger.warn('warn');
      levelLogger.error('error');
    });
    const events = (await session.finish()).map((event) => parseObject(event.data));
    expect(events.map((event) => [event.level, event.message])).toEqual([
      ['warn', 'warn'],
      ['error', 'error'],
    ]);
  });

  it('sends info and above by default, even under a debug logger; debug only with its own lower level', async () => {
    const session = await openSession();
    logIn(session, () => {
      debugLogger.debug('internal detail');
      debugLogger.info('progress');
    });
    const events = await session.finish();
    const plain = events.filter((event) => event.event === undefined).map((event) => parseObject(event.data).message);
    const verbose = events.filter((event) => event.event === 'debug-log').map((event) => parseObject(event.data).message);
    expect(plain).toEqual(['progress']);
    expect(verbose).toEqual(['internal detail', 'progress']);
  });

  it('names its events with the event option', async () => {
    const session = await openSession();
    logIn(session, () => namedLogger.info('named'));
    const events = await session.finish();
    expect(events).toHaveLength(1);
    expect(events[0].event).toBe('log-line');
    expect(parseObject(events[0].data)).toEqual({ type: 'log', level: 'info', message: 'named' });
  });

  it("never lets its own format's exception reach logger.info(); the next record still arrives", async () => {
    const session = await openSession();
    // Our transport leaves functions out of the event, but its json() format calls this and throws.
    const hostile = {
      toJSON() {
        throw new Error('toJSON exploded');
      },
    };
    const thrown = logIn(session, () => throwingFormatLogger.info('hostile', hostile));
    logIn(session, () => throwingFormatLogger.info('after'));
    expect(thrown).toBeUndefined();
    const events = (await session.finish()).map((event) => parseObject(event.data));
    // json() could not format the first record, so winston-transport dropped it; the logger and the stream live on.
    expect(events.map((event) => event.message)).toEqual(['after']);
    expect(throwingFormatSibling.records.map((record) => record.message)).toEqual(['hostile', 'after']);
  });

  it('routes records that its own format rebuilt as new objects (without the stamp)', async () => {
    const session = await openSession();
    logIn(session, () => rebuildingLogger.info('one'));
    const events = (await session.finish()).map((event) => parseObject(event.data));
    expect(events).toEqual([{ type: 'log', level: 'info', message: 'rebuilt one' }]);
  });

  it('keeps a field named __proto__ as a field, so an inherited toJSON cannot replace the event', async () => {
    const session = await openSession();
    // logger.info(message, meta) would copy meta with Object.assign, which itself turns the key into a prototype;
    // logger.write(record) hands the record over as it is.
    const record = JSON.parse('{"__proto__": {"toJSON": "not a function"}, "other": 1, "level": "info", "message": "proto"}') as LogRecord;
    logIn(session, () => safeLogger.write(record));
    const events = (await session.finish()).map((event) => parseObject(event.data));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: 'log', message: 'proto', other: 1 });
    expect(Object.prototype.hasOwnProperty.call(events[0], '__proto__')).toBe(true);
  });

  it('throws a TypeError at construction for an event name holding CR or LF', () => {
    expect(() => new SseTransport({ event: 'log\nline' })).toThrow(TypeError);
    expect(() => new SseTransport({ event: 'log\rline' })).toThrow(TypeError);
    expect(() => new SseTransport({ event: 'log\r\nline' })).toThrow(TypeError);
    expect(() => new SseTransport({ event: 'log-line' })).not.toThrow();
  });
});

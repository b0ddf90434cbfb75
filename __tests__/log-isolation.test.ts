/**
 * SseTransport routes each record to the stream of the request that logged it, and to no other, however the
 * request's work reaches the logger: await, timers, setImmediate, promise chains, EventEmitter callbacks, code that
 * never sees req/res, and child loggers. Hundreds of streams share one module-level logger.
 *
 * The slow-sibling cases are the ones a naive transport (reading `currentStream()` inside `log()`) fails: a second
 * transport with `highWaterMark: 1` that calls back 5 ms later makes winston buffer records and hand them to every
 * transport later, from whichever request's async context drained the pipe.
 */
import express from 'express';
import winston from 'winston';
import TransportStream from 'winston-transport';
import { sseStream, SseTransport, type SseStream } from '../lib';
import { acrossAsyncWork, STEPS, stopAsyncWork, type Step } from './helpers/async-work';
import { eventually, listen, openStream, type StreamClient, type TestServer } from './helpers/sse-client';

/** A real, deliberately slow winston transport: one record at a time, each acknowledged 5 ms later. */
class SlowTransport extends TransportStream {
  delivered = 0;

  constructor() {
    const options: TransportStream.TransportStreamOptions & { highWaterMark: number } = { highWaterMark: 1 };
    super(options);
  }

  override log(_info: unknown, next: () => void): void {
    setTimeout(() => {
      this.delivered += 1;
      next();
    }, 5);
  }
}

type Scenario = 'alone' | 'slow' | 'child' | 'child-slow';

// One module-level logger per scenario, shared by every request of that scenario.
const aloneTransport = new SseTransport();
const aloneLogger = winston.createLogger({ level: 'info', transports: [aloneTransport] });

const slowSse = new SseTransport();
const slowSibling = new SlowTransport();
const slowLogger = winston.createLogger({ level: 'info', transports: [slowSse, slowSibling] });

const childSlowSse = new SseTransport();
const childSlowSibling = new SlowTransport();
const childSlowLogger = winston.createLogger({ level: 'info', transports: [childSlowSse, childSlowSibling] });

const scenarioLoggers: Record<Scenario, winston.Logger> = {
  alone: aloneLogger,
  slow: slowLogger,
  child: aloneLogger,
  'child-slow': childSlowLogger,
};

/** Largest number of records observed waiting inside a logger, to prove the slow scenarios really buffered. */
const maxBacklog: Record<Scenario, number> = { alone: 0, slow: 0, child: 0, 'child-slow': 0 };

/** The work of one request: one log record per step in STEPS, each reached a different way. */
async function work(log: winston.Logger, marker: string, scenario: Scenario, logger: winston.Logger): Promise<void> {
  const note = (step: Step): void => {
    log.info(`step ${step}`, { marker, step });
    maxBacklog[scenario] = Math.max(maxBacklog[scenario], logger.writableLength + logger.readableLength);
  };
  await acrossAsyncWork(marker, note);
}

interface Running {
  stream: SseStream;
  done: Promise<void>;
}

const running = new Map<string, Running>();

/** A parsed log event: the JSON object in an event's data. */
type LogEvent = Record<string, unknown>;

function parseLogEvent(data: string): LogEvent {
  const value: unknown = JSON.parse(data);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`not a JSON object: ${data}`);
  return value as LogEvent;
}

/** True once every record written to `logger` has been handed to (and acknowledged by) every transport. */
function drained(logger: winston.Logger, transports: TransportStream[]): boolean {
  return logger.writableLength === 0 && logger.readableLength === 0 && transports.every((t) => t.writableLength === 0);
}

describe('SseTransport: each client receives exactly its own log events', () => {
  let server: TestServer;

  beforeAll(async () => {
    const app = express();
    app.get('/logs/:scenario', sseStream({ heartbeat: 0 }), (req, res) => {
      const scenario = String(req.params.scenario) as Scenario;
      const marker = String(req.query.id);
      const logger = scenarioLoggers[scenario];
      const log = scenario === 'child' || scenario === 'child-slow' ? logger.child({ requestId: marker }) : logger;
      running.set(marker, { stream: res.sse, done: work(log, marker, scenario, logger) });
    });
    server = await listen(app);
  });

  afterAll(async () => {
    stopAsyncWork();
    await server.close();
  });

  /**
   * Opens `count` streams at once, lets every request finish its work, waits until the logger has handed every
   * record to every transport, closes the streams (which flushes them) and returns each client's log events.
   */
  async function run(
    scenario: Scenario,
    count: number,
    transports: TransportStream[],
  ): Promise<Array<{ marker: string; events: LogEvent[]; names: Array<string | undefined> }>> {
    const markers = Array.from({ length: count }, (_, index) => `${scenario}-${index}`);
    const clients: StreamClient[] = await Promise.all(
      markers.map((marker) => openStream(`${server.url}/logs/${scenario}?id=${encodeURIComponent(marker)}`)),
    );
    await eventually(() => markers.every((marker) => running.has(marker)), 10_000, 'every route to start');
    await Promise.all(markers.map((marker) => running.get(marker)?.done));
    const logger = scenarioLoggers[scenario];
    await eventually(() => drained(logger, transports), 15_000, 'the logger to hand every record to every transport');
    // close() flushes what was pushed; after `ended` the client holds everything its stream was ever sent.
    await Promise.all(markers.map((marker) => running.get(marker)?.stream.close()));
    await Promise.all(clients.map((client) => client.ended));
    return markers.map((marker, index) => ({
      marker,
      events: clients[index].events.map((event) => parseLogEvent(event.data)),
      names: clients[index].events.map((event) => event.event),
    }));
  }

  /** Every difference between what each client received and exactly its own STEPS, as readable lines. */
  function problems(
    results: Array<{ marker: string; events: LogEvent[] }>,
    extra: (marker: string, event: LogEvent) => string | undefined = () => undefined,
  ): string[] {
    const found: string[] = [];
    for (const { marker, events } of results) {
      const foreign = events.filter((event) => event.marker !== marker);
      if (foreign.length > 0) found.push(`${marker} received ${foreign.length} foreign record(s), e.g. ${JSON.stringify(foreign[0])}`);
      const steps = events.filter((event) => event.marker === marker).map((event) => String(event.step));
      const expected = [...STEPS].sort();
      if (JSON.stringify([...steps].sort()) !== JSON.stringify(expected)) {
        found.push(`${marker} received steps ${JSON.stringify([...steps].sort())}, expected ${JSON.stringify(expected)}`);
      }
      for (const event of events) {
        if (event.type !== 'log' || event.level !== 'info' || event.message !== `step ${String(event.step)}`) {
          found.push(`${marker} received a malformed log event ${JSON.stringify(event)}`);
        }
        const complaint = extra(marker, event);
        if (complaint !== undefined) found.push(complaint);
      }
    }
    // Keep a failure readable when every one of hundreds of clients is wrong.
    return found.length > 12 ? [...found.slice(0, 12), `... and ${found.length - 12} more`] : found;
  }

  it('routes 200 concurrent streams through one logger with SseTransport alone', async () => {
    const results = await run('alone', 200, [aloneTransport]);
    expect(problems(results)).toEqual([]);
    expect(results.flatMap((result) => result.names).every((name) => name === undefined)).toBe(true);
  });

  it('routes correctly when a slow sibling transport makes winston buffer and deliver records later', async () => {
    const results = await run('slow', 50, [slowSse, slowSibling]);
    // The scenario is only meaningful if records really waited in the logger and reached log() later.
    expect(maxBacklog.slow).toBeGreaterThan(50);
    expect(slowSibling.delivered).toBe(50 * STEPS.length);
    expect(problems(results)).toEqual([]);
  });

  it('routes the records of per-request child loggers, with the child fields, across 200 streams', async () => {
    const results = await run('child', 200, [aloneTransport]);
    expect(
      problems(results, (marker, event) =>
        event.requestId === marker ? undefined : `${marker} received an event without its requestId: ${JSON.stringify(event)}`,
      ),
    ).toEqual([]);
  });

  it('routes the records of per-request child loggers when a slow sibling transport buffers them', async () => {
    const results = await run('child-slow', 50, [childSlowSse, childSlowSibling]);
    expect(maxBacklog['child-slow']).toBeGreaterThan(50);
    expect(childSlowSibling.delivered).toBe(50 * STEPS.length);
    expect(
      problems(results, (marker, event) =>
        event.requestId === marker ? undefined : `${marker} received an event without its requestId: ${JSON.stringify(event)}`,
      ),
    ).toEqual([]);
  });
});

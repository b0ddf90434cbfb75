/**
 * sseDestination routes each pino record to the stream of the request whose work called `logger.info()`, and to no
 * other: 200 concurrent streams share one module-level logger and reach it through await, timers, setImmediate,
 * promise chains, EventEmitter callbacks and code that never sees req/res; as pino's only destination, beside
 * another destination in pino.multistream(), through per-request child loggers, and through pino-http's `req.log`.
 * The other destination gets every line.
 */
import express from 'express';
import pino, { type Logger } from 'pino';
import { pinoHttp } from 'pino-http';
import { sseStream, sseDestination, type SseStream } from '../../lib';
import { acrossAsyncWork, STEPS, stopAsyncWork } from '../helpers/async-work';
import { eventually, listen, openStream, type StreamClient, type TestServer } from '../helpers/sse-client';
import { parseObject, recorder, type Json } from './common';

type Scenario = 'alone' | 'multi' | 'child' | 'http';

// One module-level logger per kind of set-up, shared by every request of its scenarios.
const aloneLogger = pino({ level: 'info' }, sseDestination());
const sibling = recorder();
const multiLogger = pino({ level: 'debug' }, pino.multistream([{ stream: sibling, level: 'debug' }, sseDestination()]));
const httpSibling = recorder();
const httpLogger = pino({ level: 'info' }, pino.multistream([{ stream: httpSibling, level: 'info' }, sseDestination()]));
const http = pinoHttp({ logger: httpLogger, genReqId: (req) => new URL(req.url ?? '/', 'http://x').searchParams.get('id') ?? 'none' });

/** The work of one request: one record per step in STEPS, each reached a different way; and a debug record. */
async function work(log: Logger, marker: string): Promise<void> {
  await acrossAsyncWork(marker, (step) => {
    log.info({ marker, step }, `step ${step}`);
    if (step === 'sync') log.debug({ marker, step: 'debug' }, 'debug stays on the server');
  });
}

const running = new Map<string, { stream: SseStream; done: Promise<void> }>();

describe('sseDestination: each client receives exactly its own pino records', () => {
  let server: TestServer;

  beforeAll(async () => {
    const app = express();
    app.get('/logs/http', http, sseStream({ heartbeat: 0 }), (req, res) => {
      running.set(String(req.query.id), { stream: res.sse, done: work(req.log, String(req.query.id)) });
    });
    app.get('/logs/:scenario', sseStream({ heartbeat: 0 }), (req, res) => {
      const scenario = String(req.params.scenario) as Scenario;
      const marker = String(req.query.id);
      const log = scenario === 'alone' ? aloneLogger : scenario === 'multi' ? multiLogger : multiLogger.child({ requestId: marker });
      running.set(marker, { stream: res.sse, done: work(log, marker) });
    });
    server = await listen(app);
  });

  afterAll(async () => {
    stopAsyncWork();
    await server.close();
  });

  /** Opens `count` streams at once, lets every request finish its work, closes the streams and returns each client's events. */
  async function run(scenario: Scenario, count: number): Promise<Array<{ marker: string; events: Json[]; names: Array<string | undefined> }>> {
    const markers = Array.from({ length: count }, (_, index) => `${scenario}-${index}`);
    const clients: StreamClient[] = await Promise.all(
      markers.map((marker) => openStream(`${server.url}/logs/${scenario}?id=${encodeURIComponent(marker)}`)),
    );
    await eventually(() => markers.every((marker) => running.has(marker)), 10_000, 'every route to start');
    await Promise.all(markers.map((marker) => running.get(marker)?.done));
    // pino writes synchronously: once the work is done, every record is in its stream. close() flushes them.
    await Promise.all(markers.map((marker) => running.get(marker)?.stream.close()));
    await Promise.all(clients.map((client) => client.ended));
    return markers.map((marker, index) => ({
      marker,
      events: clients[index].events.map((event) => parseObject(event.data)),
      names: clients[index].events.map((event) => event.event),
    }));
  }

  /** Every difference between what each client received and exactly its own STEPS, as readable lines; and the counts. */
  function check(
    results: Array<{ marker: string; events: Json[] }>,
    extra: (marker: string, event: Json) => string | undefined = () => undefined,
  ): { problems: string[]; received: number; foreign: number } {
    const found: string[] = [];
    let received = 0;
    let foreignCount = 0;
    const expected = JSON.stringify([...STEPS].sort());
    for (const { marker, events } of results) {
      received += events.length;
      const foreign = events.filter((event) => event.marker !== marker);
      foreignCount += foreign.length;
      if (foreign.length > 0) found.push(`${marker} received ${foreign.length} foreign record(s), e.g. ${JSON.stringify(foreign[0])}`);
      const steps = events.filter((event) => event.marker === marker).map((event) => String(event.step));
      if (JSON.stringify([...steps].sort()) !== expected) found.push(`${marker} received steps ${JSON.stringify([...steps].sort())}, expected ${expected}`);
      for (const event of events) {
        if (Object.keys(event)[0] !== 'type' || event.type !== 'log' || event.level !== 'info' || event.message !== `step ${String(event.step)}`) {
          found.push(`${marker} received a malformed log event ${JSON.stringify(event)}`);
        }
        if ('msg' in event) found.push(`${marker} received pino's msg key as well: ${JSON.stringify(event)}`);
        const complaint = extra(marker, event);
        if (complaint !== undefined) found.push(complaint);
      }
    }
    return { problems: found.length > 12 ? [...found.slice(0, 12), `... and ${found.length - 12} more`] : found, received, foreign: foreignCount };
  }

  function report(name: string, count: number, result: { received: number; foreign: number }): void {
    process.stdout.write(
      `pino routing (${name}): ${count} streams × ${STEPS.length} records: ${result.received} received, ${result.foreign} foreign, expected ${count * STEPS.length}\n`,
    );
  }

  it('routes 200 concurrent streams through one logger with sseDestination as its only destination', async () => {
    const results = await run('alone', 200);
    const result = check(results);
    report('only destination', 200, result);
    expect(result.problems).toEqual([]);
    expect(result.received).toBe(200 * STEPS.length);
    expect(results.flatMap((r) => r.names).every((name) => name === undefined)).toBe(true);
  });

  it('routes 200 concurrent streams beside another destination in pino.multistream, which gets every line', async () => {
    const before = sibling.lines.length;
    const results = await run('multi', 200);
    const result = check(results);
    report('multistream', 200, result);
    expect(result.problems).toEqual([]);
    expect(result.received).toBe(200 * STEPS.length);
    // The sibling's level is debug: it also gets the debug record each request wrote, which stayed on the server.
    const lines = sibling.lines.slice(before).map(parseObject);
    expect(lines).toHaveLength(200 * (STEPS.length + 1));
    expect(lines.filter((line) => line.step === 'debug')).toHaveLength(200);
  });

  it('routes the records of per-request child loggers, with their bindings, across 200 streams', async () => {
    const results = await run('child', 200);
    const result = check(results, (marker, event) =>
      event.requestId === marker ? undefined : `${marker} received an event without its requestId: ${JSON.stringify(event)}`,
    );
    report('child loggers', 200, result);
    expect(result.problems).toEqual([]);
    expect(result.received).toBe(200 * STEPS.length);
  });

  it("routes pino-http's req.log across 200 streams; its request-completed record reaches no browser", async () => {
    const before = httpSibling.lines.length;
    const results = await run('http', 200);
    const result = check(results, (marker, event) => {
      const req = event.req as Json | undefined;
      return req?.id === marker && req.url === `/logs/http?id=${marker}` ? undefined : `${marker} received an event without its req binding: ${JSON.stringify(event)}`;
    });
    report('pino-http req.log', 200, result);
    expect(result.problems).toEqual([]);
    expect(result.received).toBe(200 * STEPS.length);
    // pino-http logs "request completed" once per response, after the stream closed: on the server only.
    await eventually(() => httpSibling.lines.length - before === 200 * (STEPS.length + 1), 5000, 'every request-completed line');
    const completed = httpSibling.lines.slice(before).map(parseObject).filter((line) => line.msg === 'request completed');
    expect(completed).toHaveLength(200);
  });
});

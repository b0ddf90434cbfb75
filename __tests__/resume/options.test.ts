/**
 * Bad `resume` options fail where they enter, with a TypeError naming the option; a key function that throws or
 * returns no key sends the request to the error middleware before any stream opens.
 */
import express from 'express';
import request from 'supertest';
import winston from 'winston';
import { MemoryStore, SseTransport, abortRun, sseStream, type ResumeOptions } from '../../lib';
import { listen, openStream } from '../helpers/sse-client';

const key = (): string => 'k';

describe('sseStream({ resume }) options', () => {
  test.each<[string, unknown, string]>([
    ['not an object', 'yes', 'resume: expected an object, got the string "yes"'],
    ['no key function', {}, 'resume.key: expected a function of the request, got undefined'],
    ['an unknown option', { key, maxEvent: 3 }, 'resume.maxEvent: not an option of resume'],
    ['a store that is not one', { key, store: { open() {} } }, 'resume.store: expected a ResumeStore (an object with open, append, renew, end, abort, read, watch), got object'],
    ['a ttl of 0', { key, ttl: 0 }, 'resume.ttl: expected 1 to 2147483647 milliseconds, got 0'],
    ['a fractional lease', { key, lease: 1.5 }, 'resume.lease: expected a non-negative integer, got number 1.5'],
    ['maxEvents of 0', { key, maxEvents: 0 }, 'resume.maxEvents: must be at least 1'],
  ])('%s throws a TypeError naming it', (_what, resume, message) => {
    expect(() => sseStream({ resume: resume as ResumeOptions })).toThrow(new TypeError(message));
  });

  test('resume needs the SSE format: NDJSON has no ids to resume from', () => {
    expect(() => sseStream({ format: 'ndjson', resume: { key } })).toThrow(
      new TypeError("resume: needs format 'sse' (NDJSON has no event ids to resume from), got format the string \"ndjson\""),
    );
    expect(() => sseStream({ format: 'auto', resume: { key } })).toThrow(TypeError);
  });

  test('abortRun() with a key that is not a non-empty string throws a TypeError naming it', async () => {
    await expect(abortRun('')).rejects.toThrow(new TypeError('key: expected a non-empty string'));
    await expect(abortRun(7 as unknown as string)).rejects.toThrow(TypeError);
  });

  test('abortRun() with a store that is not a ResumeStore throws a TypeError naming it', async () => {
    const expected = (got: string): TypeError =>
      new TypeError(`store: expected a ResumeStore (an object with open, append, renew, end, abort, read, watch), got ${got}`);
    await expect(abortRun('run', null as never)).rejects.toThrow(expected('null'));
    await expect(abortRun('run', { abort: async () => true } as never)).rejects.toThrow(expected('object'));
  });

  test('a key function that throws, or returns no string, reaches the error middleware as an HTTP error', async () => {
    const app = express();
    const store = new MemoryStore();
    let routeRan = false;
    app.get('/throws', sseStream({ resume: { key: () => { throw new Error('no session'); }, store } }), () => (routeRan = true));
    app.get('/empty', sseStream({ resume: { key: () => '', store } }), () => (routeRan = true));
    app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(400).json({ error: error.message });
    });
    const thrown = await request(app).get('/throws');
    expect(thrown.status).toBe(400);
    expect(thrown.body).toEqual({ error: 'no session' });
    const empty = await request(app).get('/empty');
    expect(empty.status).toBe(400);
    expect(empty.body).toEqual({ error: 'resume.key: expected the function to return a non-empty string, got the string ""' });
    expect(routeRan).toBe(false);
    expect(store.size).toBe(0);
  });

  test("SseTransport records go into the run, so a client that comes back replays the route's logs too", async () => {
    const store = new MemoryStore();
    const logger = winston.createLogger({ transports: [new SseTransport()] });
    const app = express();
    app.get('/logged', sseStream({ done: '[DONE]', heartbeat: 0, resume: { key: () => 'logged', store } }), async (_req, res) => {
      logger.info('step one');
      await new Promise((resolve) => setTimeout(resolve, 5));
      logger.info('step two', { detail: 2 });
      await res.sse.close();
    });
    const server = await listen(app);
    try {
      const first = await openStream(`${server.url}/logged`);
      await first.ended;
      const late = await openStream(`${server.url}/logged`);
      await late.ended;
      const expected = [
        '{"type":"log","level":"info","message":"step one"}',
        '{"type":"log","level":"info","message":"step two","detail":2}',
        '[DONE]',
      ];
      expect(first.events.map((event) => event.data)).toEqual(expected);
      expect(late.events.map((event) => event.data)).toEqual(expected);
    } finally {
      await server.close();
    }
  });
});

import express from 'express';
import request from 'supertest';
import { sseStream, type PushOptions, type SseStream } from '../lib';
import { listen, parseEvents, type TestServer } from './helpers/sse-client';

/** What the route saw when it tried a bad push or send, then pushed `'after'` on the same stream. */
interface Outcome {
  thrown?: unknown;
  returned?: unknown;
  settled?: PromiseSettledResult<unknown>;
  closedAfterAttempt?: boolean;
  pushedAfter?: boolean;
}

type Attempt = (sse: SseStream) => unknown;

function circular(): Record<string, unknown> {
  const value: Record<string, unknown> = { name: 'loop' };
  value.self = value;
  return value;
}

/** Test-only casts for values the types forbid but JavaScript callers can still pass. */
const notANumber = (value: unknown): number => value as number;

const badPushes: Array<[string, string, unknown, PushOptions | undefined]> = [
  ['undefined data', 'data', undefined, undefined],
  ['an event containing CR', 'event', 'x', { event: 'up\rdate' }],
  ['an event containing LF', 'event', 'x', { event: 'up\ndate' }],
  ['an event containing NUL', 'event', 'x', { event: 'up\0date' }],
  ['an id containing CR', 'id', 'x', { id: '1\r2' }],
  ['an id containing LF', 'id', 'x', { id: '1\n2' }],
  ['an id containing NUL', 'id', 'x', { id: '1\u00002' }],
  ['retry -1', 'retry', 'x', { retry: -1 }],
  ['retry 1.5', 'retry', 'x', { retry: 1.5 }],
  ['retry NaN', 'retry', 'x', { retry: NaN }],
  ["retry '10'", 'retry', 'x', { retry: notANumber('10') }],
  ['a circular object', 'data', circular(), undefined],
  ['a BigInt', 'data', 10n, undefined],
  ['an object holding a BigInt', 'data', { count: 10n }, undefined],
  ['null options', 'options', 'x', null as unknown as PushOptions],
  ['options that are a string', 'options', 'x', 'update' as unknown as PushOptions],
];

describe('push() and send() with bad input', () => {
  let server: TestServer;
  let attempt: Attempt = () => undefined;
  let outcome: Outcome = {};
  /** The body of a stream that only pushed `'after'`: what every failed attempt must leave on the wire. */
  let cleanBody: string;

  beforeAll(async () => {
    const app = express();
    app.get('/attempt', sseStream({ heartbeat: 0 }), async (_req, res) => {
      const seen: Outcome = {};
      outcome = seen;
      try {
        seen.returned = attempt(res.sse);
      } catch (error) {
        seen.thrown = error;
      }
      if (seen.returned instanceof Promise) [seen.settled] = await Promise.allSettled([seen.returned]);
      seen.closedAfterAttempt = res.sse.closed;
      seen.pushedAfter = res.sse.push('after');
      await res.sse.close();
    });
    app.get('/clean', sseStream({ heartbeat: 0 }), (_req, res) => {
      res.sse.push('after');
      void res.sse.close();
    });
    server = await listen(app);
    cleanBody = (await request(server.url).get('/clean')).text;
  });
  afterAll(() => server.close());

  /** Runs `run` in a fresh stream's route, then returns the body and what the route observed. */
  async function tryOnStream(run: Attempt): Promise<{ body: string; seen: Outcome }> {
    attempt = run;
    const response = await request(server.url).get('/attempt');
    expect(response.status).toBe(200);
    return { body: response.text, seen: outcome };
  }

  it('the clean reference stream holds exactly one event', () => {
    expect(parseEvents(cleanBody)).toEqual([{ event: undefined, id: undefined, data: 'after' }]);
  });

  describe('push() throws a TypeError naming the field, sends nothing and leaves the stream open', () => {
    it.each(badPushes)('for %s', async (_name, field, data, options) => {
      const { body, seen } = await tryOnStream((sse) => sse.push(data, options));
      expect(seen.thrown).toBeInstanceOf(TypeError);
      expect((seen.thrown as TypeError).message).toMatch(new RegExp(`\\b${field}\\b`));
      expect(seen.returned).toBeUndefined();
      // Nothing of the failed push reached the client: not a field, not a partial frame.
      expect(body).toBe(cleanBody);
      // The stream is still open: the next push went out and arrived.
      expect(seen.closedAfterAttempt).toBe(false);
      expect(seen.pushedAfter).toBe(true);
      expect(parseEvents(body)).toEqual([{ event: undefined, id: undefined, data: 'after' }]);
    });
  });

  describe('send() rejects with the same TypeError instead of throwing, and leaves the stream open', () => {
    const sendCases = badPushes.filter(([name]) =>
      ['undefined data', 'an event containing LF', 'an id containing LF', 'retry 1.5', 'a circular object', 'a BigInt'].includes(name),
    );
    it.each(sendCases)(
      'for %s',
      async (_name, field, data, options) => {
        const { body, seen } = await tryOnStream((sse) => sse.send(data, options));
        expect(seen.thrown).toBeUndefined();
        expect(seen.returned).toBeInstanceOf(Promise);
        expect(seen.settled?.status).toBe('rejected');
        const reason: unknown = seen.settled?.status === 'rejected' ? seen.settled.reason : undefined;
        expect(reason).toBeInstanceOf(TypeError);
        expect((reason as TypeError).message).toMatch(new RegExp(`\\b${field}\\b`));
        expect(body).toBe(cleanBody);
        expect(seen.closedAfterAttempt).toBe(false);
        expect(seen.pushedAfter).toBe(true);
      },
    );
  });

  it('a good push after several failed ones on the same stream still arrives intact', async () => {
    const { body, seen } = await tryOnStream((sse) => {
      let typeErrors = 0;
      for (const [, , data, options] of badPushes) {
        try {
          sse.push(data, options);
        } catch (error) {
          if (error instanceof TypeError) typeErrors += 1;
        }
      }
      sse.push('first', { event: 'ok', id: 1 });
      return typeErrors;
    });
    expect(seen.returned).toBe(badPushes.length);
    expect(parseEvents(body)).toEqual([
      { event: 'ok', id: '1', data: 'first' },
      { event: undefined, id: undefined, data: 'after' },
    ]);
  });
});

import { Readable } from 'node:stream';
import express, { type Response } from 'express';
import { sseErrorHandler, sseStream, type PipeSource } from '../lib';
import { Turns } from './helpers/deferred';
import { eventually, listen, openStream, type TestServer } from './helpers/sse-client';

/** What the route saw of one pipe: what it resolved with (or the error), and when the source was cancelled. */
interface PipeRun {
  result?: boolean;
  error?: unknown;
  cancelledAt?: number;
}

const runs = new Map<string, PipeRun>();
/** How far the 100,000-item source got. */
const many = { pulled: 0 };
const routeResponses = new Turns<string, Response>();

/** Sources that tick every 10 ms until cancelled, so a test can leave in the middle of them. */
function endless(kind: string, run: PipeRun): PipeSource {
  const cancelled = (): void => {
    run.cancelledAt ??= performance.now();
  };
  if (kind === 'generator') {
    return (async function* () {
      try {
        for (let i = 0; ; i += 1) {
          yield { i };
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      } finally {
        cancelled();
      }
    })();
  }
  if (kind === 'web') {
    let i = 0;
    return new ReadableStream({
      pull: (controller) =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            if (run.cancelledAt === undefined) controller.enqueue({ i: i++ });
            resolve();
          }, 10),
        ),
      cancel: cancelled,
    });
  }
  let i = 0;
  return new Readable({
    objectMode: true,
    read() {
      setTimeout(() => this.push({ i: i++ }), 10);
    },
    destroy(error, callback) {
      cancelled();
      callback(error);
    },
  });
}

describe('res.sse.pipe()', () => {
  let server: TestServer;

  beforeAll(async () => {
    const app = express();
    app.get('/generator', sseStream({ heartbeat: 0 }), async (_req, res) => {
      async function* tokens() {
        for (const text of ['Hel', 'lo', ' wor', 'ld']) yield { type: 'token', text };
      }
      const sent = await res.sse.pipe(tokens(), { event: 'token' });
      res.sse.push({ sent });
      await res.sse.close();
    });
    app.get('/web', sseStream({ heartbeat: 0 }), async (_req, res) => {
      const source = new ReadableStream({
        start(controller) {
          for (let i = 0; i < 3; i += 1) controller.enqueue({ i });
          controller.close();
        },
      });
      res.sse.push({ sent: await res.sse.pipe(source) });
      await res.sse.close();
    });
    app.get('/readable', sseStream({ heartbeat: 0 }), async (_req, res) => {
      const sent = await res.sse.pipe(Readable.from([{ i: 0 }, { i: 1 }, { skip: true }, { i: 2 }]), {
        map: (item: { i?: number }) => (item.i === undefined ? undefined : `item ${item.i}`),
      });
      res.sse.push({ sent });
      await res.sse.close();
    });
    app.get('/bytes', sseStream({ heartbeat: 0 }), async (_req, res) => {
      // "héllo 🦦" cut inside both multi-byte characters.
      const bytes = Buffer.from('héllo 🦦');
      const chunks = [bytes.subarray(0, 2), bytes.subarray(2, 8), bytes.subarray(8)];
      res.sse.push({ sent: await res.sse.pipe(Readable.from(chunks)) });
      await res.sse.close();
    });
    app.get('/endless/:kind', sseStream({ heartbeat: 0 }), async (req, res) => {
      const run: PipeRun = {};
      const kind = String(req.params.kind);
      runs.set(kind, run);
      routeResponses.get(kind).resolve(res);
      run.result = await res.sse.pipe(endless(kind, run));
    });
    // `.catch(next)`, not a rejected route: Express 4 (npm run test:express4) does not route rejected promises.
    app.get('/fails', sseStream({ heartbeat: 0 }), (_req, res, next) => {
      async function* failing() {
        yield 'one';
        yield 'two';
        throw new Error('the model is overloaded');
      }
      res.sse.pipe(failing()).then(() => res.sse.close(), next);
    });
    app.get('/fails-shaped', sseStream({ heartbeat: 0, errorEvent: ({ message, status }) => ({ error: message, status }) }), (_req, res, next) => {
      res.sse
        .pipe(
          (async function* () {
            yield 'one';
            throw Object.assign(new Error('quota exceeded'), { status: 429, expose: true });
          })(),
        )
        .catch(next);
    });
    app.get('/many', sseStream({ heartbeat: 0, highWaterMark: 16 * 1024 }), async (_req, res) => {
      let maxBuffered = 0;
      const sample = setInterval(() => (maxBuffered = Math.max(maxBuffered, res.writableLength)), 1);
      async function* items() {
        for (let i = 0; i < 100_000; i += 1) {
          many.pulled = i + 1;
          yield { i, pad: 'x'.repeat(40) };
        }
      }
      const socketMark = res.writableHighWaterMark;
      const sent = await res.sse.pipe(items());
      clearInterval(sample);
      res.sse.push({ sent, maxBuffered, socketMark });
      await res.sse.close();
    });
    app.get('/resumable', sseStream({ heartbeat: 0, resume: { key: () => 'pipe-run' } }), async (_req, res) => {
      async function* steps() {
        for (const step of ['plan', 'search', 'answer']) yield { step };
      }
      res.sse.push({ sent: await res.sse.pipe(steps()) });
      await res.sse.close();
    });
    app.get('/bad/:what', sseStream({ heartbeat: 0 }), async (req, res) => {
      const attempt =
        req.params.what === 'source' ? res.sse.pipe(42 as unknown as PipeSource) : res.sse.pipe(Readable.from([]), { mapper: String } as never);
      const error = await attempt.then(
        () => undefined,
        (rejection: unknown) => rejection,
      );
      res.sse.push({ name: (error as Error).name, message: (error as Error).message });
      await res.sse.close();
    });
    app.use(sseErrorHandler());
    server = await listen(app);
  });

  afterAll(() => server.close());

  test('an async generator: one event per item, with the push options, then it resolves true', async () => {
    const client = await openStream(`${server.url}/generator`);
    await client.ended;
    expect(client.events.map(({ event, data }) => [event, data])).toEqual([
      ['token', '{"type":"token","text":"Hel"}'],
      ['token', '{"type":"token","text":"lo"}'],
      ['token', '{"type":"token","text":" wor"}'],
      ['token', '{"type":"token","text":"ld"}'],
      [undefined, '{"sent":true}'],
    ]);
  });

  test('a web ReadableStream and a Node Readable in object mode; map() shapes items and skips undefined', async () => {
    const web = await openStream(`${server.url}/web`);
    const readable = await openStream(`${server.url}/readable`);
    await Promise.all([web.ended, readable.ended]);
    expect(web.events.map((event) => event.data)).toEqual(['{"i":0}', '{"i":1}', '{"i":2}', '{"sent":true}']);
    expect(readable.events.map((event) => event.data)).toEqual(['item 0', 'item 1', 'item 2', '{"sent":true}']);
  });

  test('bytes are decoded as UTF-8 text, a character cut between chunks included', async () => {
    const client = await openStream(`${server.url}/bytes`);
    await client.ended;
    const texts = client.events.slice(0, -1).map((event) => event.data);
    expect(texts.join('')).toBe('héllo 🦦');
    expect(texts).not.toContain('');
    expect(client.events.at(-1)!.data).toBe('{"sent":true}');
  });

  test.each(['generator', 'web', 'readable'])('a %s source is cancelled when the client leaves, and pipe() resolves false', async (kind) => {
    const client = await openStream(`${server.url}/endless/${kind}`);
    await client.waitForCount(3);
    const response = await routeResponses.get(kind).promise;
    const leftAt = performance.now();
    client.abort();
    await eventually(() => runs.get(kind)?.result !== undefined && runs.get(kind)?.cancelledAt !== undefined, 2000, `the ${kind} source to be cancelled`);
    const run = runs.get(kind)!;
    const cancelledAfter = run.cancelledAt! - leftAt;
    console.log(`pipe(${kind}): source cancelled ${cancelledAfter.toFixed(1)} ms after the client left (${client.events.length} events sent)`);
    expect(run.result).toBe(false);
    expect(response.sse.closeReason).toBe('disconnect');
    expect(cancelledAfter).toBeLessThan(100);
  });

  test('a source that throws rejects pipe(); sseErrorHandler() sends exactly one error event and ends the stream', async () => {
    const client = await openStream(`${server.url}/fails`);
    await client.ended;
    expect(client.events.map((event) => event.data)).toEqual(['one', 'two', '{"type":"error","message":"Internal Server Error"}']);
  });

  test("the route's errorEvent shapes that error event, with the error's status", async () => {
    const client = await openStream(`${server.url}/fails-shaped`);
    await client.ended;
    expect(client.events.map((event) => event.data)).toEqual(['one', '{"error":"quota exceeded","status":429}']);
  });

  test('100,000 items through a client that reads slowly: all arrive in order, and memory stays near highWaterMark', async () => {
    const client = await openStream(`${server.url}/many`);
    client.pause();
    // While the client reads nothing the source must stop: the kernel's socket buffers fill, then send() waits.
    await eventually(async () => {
      const before = many.pulled;
      await new Promise((resolve) => setTimeout(resolve, 100));
      return before > 0 && many.pulled === before;
    }, 5000, 'the source to stop while the client reads nothing');
    const pulledWhileStalled = many.pulled;
    client.resume();
    await client.ended;
    const events = client.events.map((event) => JSON.parse(event.data) as { i?: number; sent?: boolean; maxBuffered?: number; socketMark?: number });
    const summary = events.pop()!;
    expect(events.map((event) => event.i)).toEqual(Array.from({ length: 100_000 }, (_, i) => i));
    console.log(
      `pipe() of 100,000 items (69 B each) to a stalled client, highWaterMark 16384: the source stopped after ${pulledWhileStalled} items; ` +
        `largest res.writableLength seen ${summary.maxBuffered} (socket writableHighWaterMark ${summary.socketMark})`,
    );
    expect(summary.sent).toBe(true);
    expect(pulledWhileStalled).toBeLessThan(100_000);
    // What waits in the process for the client: within the mark, plus the one chunk (at most a highWaterMark's worth
    // of items) written past it. The stream stops writing when res.write() returns false, which the socket decides by
    // its writableHighWaterMark (16 KiB up to Node 20, 64 KiB since Node 22), so the mark is the larger of the two.
    const mark = Math.max(16 * 1024, summary.socketMark!);
    expect(summary.maxBuffered).toBeLessThan(mark + 16 * 1024);
  });

  test('in a resumable run the items go to the run, and a late client replays them', async () => {
    const first = await openStream(`${server.url}/resumable`);
    await first.ended;
    const late = await openStream(`${server.url}/resumable`);
    await late.ended;
    for (const client of [first, late]) {
      expect(client.events.map((event) => event.data)).toEqual(['{"step":"plan"}', '{"step":"search"}', '{"step":"answer"}', '{"sent":true}']);
    }
  });

  test.each([
    ['source', 'TypeError', /^source: expected an AsyncIterable, a ReadableStream or a Node Readable, got number 42$/],
    ['option', 'TypeError', /^mapper: not an option of pipe\(\)$/],
  ])('a bad %s is a TypeError rejection naming it', async (what, name, message) => {
    const client = await openStream(`${server.url}/bad/${what}`);
    await client.ended;
    const reported = JSON.parse(client.events[0]!.data) as { name: string; message: string };
    expect(reported.name).toBe(name);
    expect(reported.message).toMatch(message);
  });
});

/**
 * Cancellation: leaving the `for await` loop and aborting the AbortSignal both close the connection, which the
 * server sees as its `res.sse.signal` aborting (the route awaits that signal).
 */
import express from 'express';
import { sseStream } from '../../lib';
import { readEvents } from '../../lib/client';
import { deferred, type Deferred } from '../helpers/deferred';
import { listen, type TestServer } from '../helpers/sse-client';

describe('readEvents() cancellation', () => {
  let server: TestServer;
  /** Resolved with the stream's close reason once the route saw its signal abort, per request tag. */
  const aborted = new Map<string, Deferred<string | undefined>>();
  const abortedFor = (tag: string): Deferred<string | undefined> => {
    if (!aborted.has(tag)) aborted.set(tag, deferred<string | undefined>());
    return aborted.get(tag)!;
  };

  beforeAll(async () => {
    const app = express();
    // Pushes a few events, then waits for the client to leave: the route never ends the stream itself.
    app.all('/until-aborted', express.json(), sseStream({ heartbeat: 0 }), async (req, res) => {
      const tag = String(req.query.tag);
      for (let i = 1; i <= 3; i += 1) res.sse.push({ i }, { id: i });
      await new Promise<void>((resolve) => res.sse.signal.addEventListener('abort', () => resolve(), { once: true }));
      abortedFor(tag).resolve(res.sse.closeReason);
    });
    server = await listen(app);
  });
  afterAll(() => server?.close());

  test('break out of the loop closes the connection: the server-side signal aborts', async () => {
    const seen: unknown[] = [];
    for await (const event of readEvents(`${server.url}/until-aborted?tag=break`)) {
      seen.push(event.json());
      if (seen.length === 2) break;
    }
    expect(seen).toEqual([{ i: 1 }, { i: 2 }]);
    await expect(abortedFor('break').promise).resolves.toBe('disconnect');
  });

  test('an exception thrown in the loop body closes it too', async () => {
    const boom = new Error('consumer failed');
    await expect(
      (async () => {
        for await (const _event of readEvents(`${server.url}/until-aborted?tag=throw`, { method: 'POST' })) throw boom;
      })(),
    ).rejects.toBe(boom);
    await expect(abortedFor('throw').promise).resolves.toBe('disconnect');
  });

  test('aborting the signal mid-stream makes the loop throw its reason and aborts the server-side signal', async () => {
    const controller = new AbortController();
    const reason = new Error('user pressed stop');
    const seen: unknown[] = [];
    const loop = (async () => {
      for await (const event of readEvents(`${server.url}/until-aborted?tag=signal`, { signal: controller.signal })) {
        seen.push(event.json());
        // Waits for the next event, which never comes: the route pushes three, then only waits.
        if (seen.length === 3) controller.abort(reason);
      }
    })();
    await expect(loop).rejects.toBe(reason);
    expect(seen).toHaveLength(3);
    await expect(abortedFor('signal').promise).resolves.toBe('disconnect');
  });

  test('aborting while the loop waits for the next chunk (nothing more is coming) rejects that wait', async () => {
    const controller = new AbortController();
    const stream = readEvents(`${server.url}/until-aborted?tag=waiting`, { signal: controller.signal });
    for (let i = 0; i < 3; i += 1) await stream.next();
    const waiting = stream.next();
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    await expect(abortedFor('waiting').promise).resolves.toBe('disconnect');
  });

  test('an already aborted signal sends no request', async () => {
    const controller = new AbortController();
    controller.abort(new Error('too late'));
    let calls = 0;
    const stream = readEvents(`${server.url}/until-aborted?tag=never`, {
      signal: controller.signal,
      fetch: (url, init) => {
        calls += 1;
        return fetch(url, init);
      },
    });
    await expect(stream.next()).rejects.toThrow('too late');
    expect(calls).toBe(0);
  });

  test('break out of a loop over a Response fetched elsewhere cancels its body: the server-side signal aborts', async () => {
    const response = await fetch(`${server.url}/until-aborted?tag=response`);
    for await (const _event of readEvents(response)) break;
    await expect(abortedFor('response').promise).resolves.toBe('disconnect');
  });

  test('aborting the signal given for a Response stops the loop', async () => {
    const response = await fetch(`${server.url}/until-aborted?tag=response-signal`);
    const controller = new AbortController();
    const stream = readEvents(response, { signal: controller.signal });
    await stream.next();
    await stream.next();
    await stream.next();
    const waiting = stream.next();
    controller.abort(new Error('stop reading'));
    await expect(waiting).rejects.toThrow('stop reading');
    await expect(abortedFor('response-signal').promise).resolves.toBe('disconnect');
  });
});

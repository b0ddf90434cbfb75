/**
 * Resumable streams on the default in-memory store: a run outlives its connection, and a client that comes back
 * (with or without Last-Event-ID) gets exactly what it missed, then the live events, then the end.
 */
import express from 'express';
import { MemoryStore, abortRun, sseChannel, sseErrorHandler, sseStream, type SseStream } from '../../lib';
import { Turns, type Deferred } from '../helpers/deferred';
import { listen, openStream, type StreamClient, type TestServer } from '../helpers/sse-client';

describe('sseStream({ resume }) with the memory store', () => {
  let server: TestServer;
  const store = new MemoryStore();
  /** The run of each key, as its route saw it, and how many times the route ran for that key. */
  const runs = new Turns<string, SseStream>();
  const routeRuns = new Map<string, number>();
  const runOf = (key: string): Deferred<SseStream> => runs.get(key);

  beforeAll(async () => {
    const app = express();
    app.get(
      '/runs/:key',
      sseStream({ done: '[DONE]', heartbeat: 0, resume: { key: (req) => String(req.params.key), store } }),
      (req, res) => {
        const key = String(req.params.key);
        routeRuns.set(key, (routeRuns.get(key) ?? 0) + 1);
        runOf(key).resolve(res.sse);
      },
    );
    app.get(
      '/failing/:key',
      sseStream({ done: '[DONE]', heartbeat: 0, resume: { key: (req) => `failing:${String(req.params.key)}`, store } }),
      (_req, res, next) => {
        res.sse.push({ step: 1 });
        // next(error), not a rejection: Express 4 (npm run test:express4) does not route rejected promises.
        setTimeout(() => next(new Error('secret internals')), 10);
      },
    );
    app.use(sseErrorHandler());
    server = await listen(app);
  });
  afterAll(() => server.close());

  const open = (key: string, lastEventId?: string): Promise<StreamClient> =>
    openStream(`${server.url}/runs/${key}`, { headers: lastEventId === undefined ? {} : { 'Last-Event-ID': lastEventId } });
  const datas = (client: StreamClient): string[] => client.events.map((event) => event.data);

  test('a client that drops mid-run and comes back with Last-Event-ID gets exactly the missing events, then the live ones', async () => {
    const first = await open('drop');
    const run = await runOf('drop').promise;
    for (let i = 1; i <= 5; i += 1) run.push({ n: i });
    await first.waitForCount(5);
    first.abort();
    await first.ended;
    // The run goes on without any client: the disconnect does not cancel it.
    for (let i = 6; i <= 8; i += 1) expect(run.push({ n: i })).toBe(true);
    expect(run.signal.aborted).toBe(false);

    const lastId = first.events[4]!.id;
    expect(lastId).toMatch(/^[0-9a-z]{12}\.5$/);
    const second = await open('drop', lastId);
    await second.waitForCount(3);
    for (let i = 9; i <= 10; i += 1) run.push({ n: i });
    await run.close();
    await second.ended;

    expect(datas(second)).toEqual(['{"n":6}', '{"n":7}', '{"n":8}', '{"n":9}', '{"n":10}', '[DONE]']);
    const ids = [...first.events, ...second.events].filter((event) => event.id !== undefined).map((event) => event.id);
    expect(new Set(ids).size).toBe(10);
    expect(ids.map((id) => Number(id!.split('.')[1]))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(routeRuns.get('drop')).toBe(1);
  });

  test('a later request without Last-Event-ID replays the whole run and ends with done; the route does not run again', async () => {
    const first = await open('replay');
    const run = await runOf('replay').promise;
    run.push('a');
    run.push({ b: 2 }, { event: 'step' });
    await run.close();
    await first.ended;

    const late = await open('replay');
    await late.ended;
    expect(late.events.map(({ data, event }) => ({ data, event }))).toEqual([
      { data: 'a', event: undefined },
      { data: '{"b":2}', event: 'step' },
      { data: '[DONE]', event: undefined },
    ]);
    expect(late.events.map((event) => event.id)).toEqual(first.events.map((event) => event.id));
    expect(routeRuns.get('replay')).toBe(1);
  });

  test('100 followers of one key receive identical sequences', async () => {
    const first = await open('fanout');
    const run = await runOf('fanout').promise;
    run.push({ n: 0 });
    const followers = await Promise.all(Array.from({ length: 99 }, () => open('fanout')));
    for (let i = 1; i < 50; i += 1) run.push({ n: i });
    await run.close();
    const all = [first, ...followers];
    await Promise.all(all.map((client) => client.ended));
    const expected = [...Array.from({ length: 50 }, (_, i) => `{"n":${i}}`), '[DONE]'];
    for (const client of all) expect(datas(client)).toEqual(expected);
    expect(new Set(all.map((client) => client.raw())).size).toBe(1);
    expect(routeRuns.get('fanout')).toBe(1);
  });

  test("a key's events never reach another key's clients, and an id from another key replays from the start", async () => {
    const [red, blue] = await Promise.all([open('red'), open('blue')]);
    const [redRun, blueRun] = await Promise.all([runOf('red').promise, runOf('blue').promise]);
    redRun.push('red 1');
    blueRun.push('blue 1');
    redRun.push('red 2');
    await Promise.all([red.waitForCount(2), blue.waitForCount(1)]);
    const blueId = blue.events[0]!.id;
    const redWithBlueId = await open('red', blueId);
    await redWithBlueId.waitForCount(2);
    await Promise.all([redRun.close(), blueRun.close()]);
    await Promise.all([red.ended, blue.ended, redWithBlueId.ended]);
    expect(datas(red)).toEqual(['red 1', 'red 2', '[DONE]']);
    expect(datas(blue)).toEqual(['blue 1', '[DONE]']);
    expect(datas(redWithBlueId)).toEqual(['red 1', 'red 2', '[DONE]']);
  });

  test.each([
    ['malformed', 'not-an-id'],
    ['position-less', 'abc.'],
    ['beyond-the-run', 'SAME.999'],
    ['foreign-run', 'zzzzzzzzzzzz.1'],
  ])('a Last-Event-ID that is %s replays from the start of what is kept', async (what, header) => {
    const key = `bad-${what}`;
    const first = await open(key);
    const run = await runOf(key).promise;
    run.push('one');
    run.push('two');
    await first.waitForCount(2);
    const runId = first.events[0]!.id!.split('.')[0]!;
    const client = await open(key, header.replace('SAME', runId));
    await client.waitForCount(2);
    await run.close();
    await client.ended;
    expect(datas(client)).toEqual(['one', 'two', '[DONE]']);
  });

  test('abortRun() stops the route through its signal; its clients get done after what was sent', async () => {
    const client = await open('stop');
    const run = await runOf('stop').promise;
    run.push('working');
    await client.waitForCount(1);
    expect(await abortRun('stop', store)).toBe(true);
    expect(run.signal.aborted).toBe(true);
    expect(run.signal.reason).toMatchObject({ name: 'AbortError' });
    expect(run.closeReason).toBe('aborted');
    expect(run.push('too late')).toBe(false);
    await client.ended;
    expect(datas(client)).toEqual(['working', '[DONE]']);
    expect(await abortRun('stop', store)).toBe(false);
    expect(await abortRun('no-such-run', store)).toBe(false);
  });

  test('an error thrown by the route becomes a stored error event that a late client replays too', async () => {
    const client = await openStream(`${server.url}/failing/1`);
    await client.ended;
    const late = await openStream(`${server.url}/failing/1`);
    await late.ended;
    for (const seen of [client, late]) {
      expect(datas(seen)).toEqual(['{"step":1}', '{"type":"error","message":"Internal Server Error"}', '[DONE]']);
    }
  });

  test('the producing route cannot choose ids (the run numbers its events) and gets a TypeError naming the field', async () => {
    const client = await open('ids');
    const run = await runOf('ids').promise;
    expect(() => run.push('x', { id: 7 })).toThrow(new TypeError('id: a resumable stream numbers its events itself'));
    expect(() => run.push('x', { event: 'a\nb' })).toThrow(TypeError);
    await expect(run.send(undefined)).rejects.toThrow(TypeError);
    expect(run.push('fine')).toBe(true);
    await run.close();
    await client.ended;
    expect(datas(client)).toEqual(['fine', '[DONE]']);
  });

  test('send() resolves true once the event is in the store, false after close', async () => {
    const client = await open('send');
    const run = await runOf('send').promise;
    await expect(run.send('stored')).resolves.toBe(true);
    const read = await store.read('run:send', 0, 10);
    expect(read.events.map((event) => event.frame.split('\n')[1])).toEqual(['data: stored']);
    await run.close();
    await expect(run.send('late')).resolves.toBe(false);
    await client.ended;
  });

  test("runs and channels keep to their own keys in a shared store: a run key cannot read or stop a channel", async () => {
    const secret = sseChannel('private', { store });
    const follower = await open('channel:private');
    const run = await runOf('channel:private').promise;
    secret.push('for subscribers only');
    await run.send('the run');
    expect(await abortRun('channel:private', store)).toBe(true);
    await follower.ended;
    expect(datas(follower)).toEqual(['the run', '[DONE]']);
    // The channel was not stopped: it still takes pushes.
    expect(secret.push('still open')).toBe(true);
    await secret.close();
  });

  test('the route keeps running after its only client left, and the store holds what it produced', async () => {
    const client = await open('orphan');
    const run = await runOf('orphan').promise;
    client.abort();
    await client.ended;
    for (let i = 0; i < 3; i += 1) await run.send(i);
    expect(run.closed).toBe(false);
    const read = await store.read('run:orphan', 0, 10);
    expect(read.events).toHaveLength(3);
    await run.close();
  });
});

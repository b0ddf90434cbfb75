/**
 * `resume.mode`: what a request does with its key's run. 'join' follows it (today's behaviour), 'start' always runs
 * the route as a new run, 'follow' never runs the route and answers 204 when there is no live run.
 */
import express from 'express';
import { MemoryStore, sseStream, type ResumeStore, type SseStream } from '../../lib';
import { Turns } from '../helpers/deferred';
import { wrapStore } from '../helpers/stores';
import { eventually, listen, openStream, type StreamClient, type TestServer } from '../helpers/sse-client';

/** The same store, with `replaceLive` hidden from it: a custom store written before the option existed. */
function withoutReplaceLive(inner: ResumeStore): ResumeStore {
  return wrapStore(inner, { open: (key, { replaceLive: _ignored, ...settings }) => inner.open(key, settings) });
}

describe.each([
  ['MemoryStore', () => new MemoryStore(), true],
  // Such a store's live run is aborted, then the key opened again: the old run's clients get its end.
  ['a store that ignores replaceLive', () => withoutReplaceLive(new MemoryStore()), false],
])('resume.mode with %s', (_name, makeStore, followersMoveOn) => {
  let server: TestServer;
  const store = makeStore();
  /** Each time the route ran for a key: its res.sse, in order. */
  const starts = new Turns<string, SseStream>();
  const ran = new Map<string, number>();

  beforeAll(async () => {
    const app = express();
    const resume = (mode: 'join' | 'start' | 'follow') =>
      sseStream({ done: '[DONE]', heartbeat: 0, resume: { key: (req) => String(req.params.chat), store, mode, lease: 200 } });
    const route = (req: express.Request, res: express.Response): void => {
      const chat = String(req.params.chat);
      const count = (ran.get(chat) ?? 0) + 1;
      ran.set(chat, count);
      starts.get(`${chat}#${count}`).resolve(res.sse);
    };
    app.post('/chats/:chat', resume('start'), route);
    app.get('/chats/:chat/join', resume('join'), route);
    app.get('/chats/:chat/stream', resume('follow'), () => {
      throw new Error("'follow' never runs the route");
    });
    server = await listen(app);
  });
  afterAll(() => server.close());

  const post = (chat: string): Promise<StreamClient> => openStream(`${server.url}/chats/${chat}`, { method: 'POST' });
  const datas = (client: StreamClient): string[] => client.events.map((event) => event.data);

  test("'start': every request runs the route as a new run; an ended run is not replayed", async () => {
    const first = await post('ended');
    const one = await starts.get('ended#1').promise;
    one.push('answer 1');
    await one.close();
    await first.ended;
    const second = await post('ended');
    const two = await starts.get('ended#2').promise;
    two.push('answer 2');
    await two.close();
    await second.ended;
    expect(datas(first)).toEqual(['answer 1', '[DONE]']);
    expect(datas(second)).toEqual(['answer 2', '[DONE]']);
    expect(ran.get('ended')).toBe(2);
  });

  test("'start' on a live run stops it first; with replaceLive its followers move on to the new run from its start", async () => {
    const first = await post('live');
    const one = await starts.get('live#1').promise;
    one.push('old 1');
    const follower = await openStream(`${server.url}/chats/live/stream`);
    await follower.waitForCount(1);
    await first.waitForCount(1);

    const second = await post('live');
    const two = await starts.get('live#2').promise;
    // The old run's work is told to stop, as abortRun() would, and it can add nothing more.
    await eventually(() => one.signal.aborted, 2000, 'the old run to abort');
    expect(one.push('old 2')).toBe(false);
    two.push('new 1');
    two.push('new 2');
    await two.close();
    await Promise.all([second.ended, follower.ended]);

    expect(datas(second)).toEqual(['new 1', 'new 2', '[DONE]']);
    // The old run's own client goes on to the new run too: one request, both answers, no error event.
    await first.ended;
    const seen = followersMoveOn ? ['old 1', 'new 1', 'new 2', '[DONE]'] : ['old 1', '[DONE]'];
    expect(datas(follower)).toEqual(seen);
    expect(datas(first)).toEqual(seen);
  });

  test("'follow' answers 204 before any stream header when the key has no run, or only an ended one", async () => {
    const none = await fetch(`${server.url}/chats/never/stream`);
    expect(none.status).toBe(204);
    expect(none.headers.get('content-type')).toBeNull();

    const client = await post('over');
    const run = await starts.get('over#1').promise;
    run.push('done already');
    await run.close();
    await client.ended;
    const after = await fetch(`${server.url}/chats/over/stream`);
    expect(after.status).toBe(204);
    expect(ran.get('never')).toBeUndefined();
  });

  test("'follow' follows a live run from its start (or after Last-Event-ID) and never runs the route", async () => {
    const producer = await post('follow-live');
    const run = await starts.get('follow-live#1').promise;
    run.push('one');
    run.push('two');
    await producer.waitForCount(2);
    const fromStart = await openStream(`${server.url}/chats/follow-live/stream`);
    const afterFirst = await openStream(`${server.url}/chats/follow-live/stream`, { headers: { 'Last-Event-ID': producer.events[0]!.id! } });
    await Promise.all([fromStart.waitForCount(2), afterFirst.waitForCount(1)]);
    run.push('three');
    await run.close();
    await Promise.all([fromStart.ended, afterFirst.ended]);
    expect(datas(fromStart)).toEqual(['one', 'two', 'three', '[DONE]']);
    expect(datas(afterFirst)).toEqual(['two', 'three', '[DONE]']);
    expect(ran.get('follow-live')).toBe(1);
  });

  test("'join' keeps today's behaviour: a finished run is replayed and the route does not run again", async () => {
    const first = await openStream(`${server.url}/chats/joined/join`);
    const run = await starts.get('joined#1').promise;
    run.push('kept');
    await run.close();
    await first.ended;
    const late = await openStream(`${server.url}/chats/joined/join`);
    await late.ended;
    expect(datas(late)).toEqual(['kept', '[DONE]']);
    expect(ran.get('joined')).toBe(1);
  });
});

test('an unknown resume.mode is a TypeError naming it', () => {
  expect(() => sseStream({ resume: { key: () => 'k', mode: 'replace' as never } })).toThrow(
    new TypeError("resume.mode: expected one of 'join', 'start', 'follow', got the string \"replace\""),
  );
});

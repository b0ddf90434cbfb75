import express from 'express';
import { sseStream } from '../lib';
import { delay, listen, openStream, type StreamClient, type TestServer } from './helpers/sse-client';

/** A large multi-line event: `lines` lines of varying length, each naming its event and line, joined with LF. */
function bigEvent(index: number, lines: number): string {
  return Array.from({ length: lines }, (_, line) => `event ${index} line ${line} ${'y'.repeat((index * 31 + line * 17) % 700)}`).join('\n');
}

/**
 * The frames of an SSE body, in order: each is `'comment'` (a comment line outside an event: the heartbeat, which has
 * no blank line after it) or `'event'` (lines up to the blank line that ends it).
 */
function frameKinds(raw: string): Array<'comment' | 'event'> {
  const kinds: Array<'comment' | 'event'> = [];
  let inEvent = false;
  for (const line of raw.split('\n').slice(0, -1)) {
    if (line === '') {
      if (inEvent) kinds.push('event');
      inEvent = false;
    } else if (!inEvent && line.startsWith(':')) kinds.push('comment');
    else inEvent = true;
  }
  return kinds;
}

describe('heartbeat', () => {
  let server: TestServer;
  const bigEvents = Array.from({ length: 120 }, (_, i) => bigEvent(i, 40 + (i % 50)));

  beforeAll(async () => {
    const app = express();
    // These routes push nothing: anything the client receives is the heartbeat.
    app.get('/idle/30', sseStream({ heartbeat: 30 }), () => undefined);
    app.get('/idle/15', sseStream({ heartbeat: 15 }), () => undefined);
    app.get('/idle/off', sseStream({ heartbeat: 0 }), () => undefined);
    app.get('/big', sseStream({ heartbeat: 1, highWaterMark: 16 * 1024 }), async (_req, res) => {
      for (const [i, data] of bigEvents.entries()) {
        if (!(await res.sse.send(data))) return;
        // Let the 1 ms heartbeat fire between events too (its timer is due before this one).
        if (i % 10 === 9) await delay(5);
      }
      await res.sse.close();
    });
    server = await listen(app);
  });
  afterAll(() => server.close());

  const clients: StreamClient[] = [];
  afterEach(() => clients.splice(0).forEach((client) => client.abort()));
  const open = async (path: string): Promise<StreamClient> => {
    const client = await openStream(`${server.url}${path}`);
    clients.push(client);
    return client;
  };

  it('sends a `:` comment periodically while the stream is idle (heartbeat: 30)', async () => {
    const client = await open('/idle/30');
    await waitForComments(client, 4);
    expect(client.events).toEqual([]);
    // Only comment lines are on the wire: no event, no field, and no blank line.
    const lines = client.raw().split('\n').filter((line) => line !== '');
    expect(lines.length).toBeGreaterThanOrEqual(4);
    for (const line of lines) expect(line.startsWith(':')).toBe(true);
    expect(client.raw()).toMatch(/^(: ping\n)+$/);
  });

  it('sends no heartbeat at all with heartbeat: 0', async () => {
    const silent = await open('/idle/off');
    // A stream opened after it, with a 15 ms heartbeat, gives the time a yardstick: many of its beats have gone by.
    const beating = await open('/idle/15');
    await waitForComments(beating, 6);
    expect(silent.raw()).toBe('');
    expect(silent.comments).toEqual([]);
  });

  it('never lands a heartbeat inside an event: every decoded event is exactly what was pushed', async () => {
    const client = await open('/big');
    client.pause();
    await delay(20);
    client.resume();
    await client.ended;

    expect(client.events).toHaveLength(bigEvents.length);
    client.events.forEach((event, i) => {
      expect(event.event).toBeUndefined();
      expect(event.data).toBe(bigEvents[i]);
    });
    // The heartbeat did run while the events went out: comments sit between the first and the last event.
    const kinds = frameKinds(client.raw());
    const firstEvent = kinds.indexOf('event');
    const lastEvent = kinds.lastIndexOf('event');
    const between = kinds.slice(firstEvent, lastEvent).filter((kind) => kind === 'comment').length;
    console.log(`heartbeat: ${between} heartbeats between ${bigEvents.length} multi-line events (${client.raw().length} bytes)`);
    expect(between).toBeGreaterThan(0);
  });
});

async function waitForComments(client: StreamClient, count: number): Promise<void> {
  for (let i = 0; i < 2000 && client.comments.length < count; i += 1) await delay(5);
  expect(client.comments.length).toBeGreaterThanOrEqual(count);
}

import express from 'express';
import request from 'supertest';
import { sseStream, type SseStream } from '../lib';
import { listen, openStream, parseEvents, type StreamClient, type TestServer } from './helpers/sse-client';

/** What the route does with its stream before closing it; each test sets its own. */
type Scenario = (sse: SseStream) => void;

describe('SSE wire encoding', () => {
  let server: TestServer;
  let scenario: Scenario = () => undefined;

  beforeAll(async () => {
    const app = express();
    app.get('/stream', sseStream({ heartbeat: 0 }), (_req, res) => {
      scenario(res.sse);
      void res.sse.close();
    });
    server = await listen(app);
  });
  afterAll(() => server.close());

  /** Runs `run` in the route and returns the whole response body. */
  async function body(run: Scenario): Promise<string> {
    scenario = run;
    const response = await request(server.url).get('/stream');
    expect(response.status).toBe(200);
    return response.text;
  }

  /** Runs `run` in the route and returns a client that read the whole stream (events, comments, retries, raw bytes). */
  async function read(run: Scenario): Promise<StreamClient> {
    scenario = run;
    const client = await openStream(`${server.url}/stream`);
    await client.ended;
    return client;
  }

  describe('multi-line data', () => {
    it.each([
      ['LF', 'one\ntwo\nthree'],
      ['CR', 'one\rtwo\rthree'],
      ['CRLF', 'one\r\ntwo\r\nthree'],
    ])('a string with %s line breaks arrives as one event, its lines joined by LF', async (_name, text) => {
      const events = parseEvents(await body((sse) => sse.push(text)));
      expect(events).toHaveLength(1);
      expect(events[0].data).toBe('one\ntwo\nthree');
      expect(events[0].event).toBeUndefined();
    });

    it('keeps empty lines and a trailing line break inside the data, with mixed line breaks', async () => {
      // CRLF is one break, the lone CR another: "a", "", "b", "" -> "a\n\nb\n" for an EventSource.
      const events = parseEvents(await body((sse) => {
        sse.push('a\r\n\rb\n');
        sse.push('\nleading');
        sse.push('next');
      }));
      expect(events.map((event) => event.data)).toEqual(['a\n\nb\n', '\nleading', 'next']);
    });
  });

  describe('data values', () => {
    it('sends a string as it is, never JSON-encoded', async () => {
      const strings = ['hello', '{"a":1}', '"quoted"', '42', 'null', '  spaced  '];
      const events = parseEvents(await body((sse) => strings.forEach((text) => sse.push(text))));
      expect(events.map((event) => event.data)).toEqual(strings);
    });

    it('sends objects, arrays, numbers, booleans and null as JSON', async () => {
      const values: unknown[] = [{ a: 1, b: ['x', null] }, [1, 'two', { three: 3 }], 42, 0, -1.5, true, false, null, { text: 'line\nbreak' }];
      const events = parseEvents(await body((sse) => values.forEach((value) => sse.push(value))));
      expect(events.map((event) => event.data)).toEqual(values.map((value) => JSON.stringify(value)));
      expect(events.map((event) => JSON.parse(event.data) as unknown)).toEqual(values);
    });

    it('sends push(null) as `data: null`', async () => {
      const text = await body((sse) => sse.push(null));
      expect(text).toMatch(/^data: ?null$/m);
      expect(parseEvents(text)).toEqual([expect.objectContaining({ data: 'null' })]);
    });

    it("sends push('') as an event with empty data", async () => {
      const events = parseEvents(await body((sse) => {
        sse.push('');
        sse.push('after');
      }));
      expect(events.map((event) => event.data)).toEqual(['', 'after']);
    });
  });

  describe('event, id and retry fields', () => {
    it('sends the event name, string and number ids, and a per-event retry as fields the parser reports', async () => {
      const client = await read((sse) => {
        sse.push('named', { event: 'update', id: 'abc-1' });
        sse.push('numbered', { id: 42 });
        sse.push('zero', { id: 0 });
        sse.push('slow down', { retry: 1500 });
        sse.push('plain');
      });
      expect(client.events).toEqual([
        { event: 'update', id: 'abc-1', data: 'named' },
        { event: undefined, id: '42', data: 'numbered' },
        { event: undefined, id: '0', data: 'zero' },
        { event: undefined, id: undefined, data: 'slow down' },
        { event: undefined, id: undefined, data: 'plain' },
      ]);
      expect(client.retries).toEqual([1500]);
    });
  });

  describe('injection', () => {
    it('a string holding a blank line and field names arrives as ONE message event; no `admin` event exists', async () => {
      const hostile = 'a\n\nevent: admin\ndata: x';
      const client = await read((sse) => {
        sse.push(hostile);
        sse.push('next');
      });
      expect(client.events).toEqual([
        { event: undefined, id: undefined, data: hostile },
        { event: undefined, id: undefined, data: 'next' },
      ]);
      expect(client.events.some((event) => event.event === 'admin')).toBe(false);
    });

    it('a string holding id: and retry: lines sets neither', async () => {
      const hostile = 'x\r\nid: 666\rretry: 1\n\ndata: y';
      const client = await read((sse) => sse.push(hostile));
      expect(client.events).toEqual([{ event: undefined, id: undefined, data: 'x\nid: 666\nretry: 1\n\ndata: y' }]);
      expect(client.retries).toEqual([]);
    });
  });

  describe('framing', () => {
    it('ends every event with exactly one blank line, and nothing else with one', async () => {
      const text = await body((sse) => {
        sse.push('a');
        sse.push({ b: 1 }, { event: 'e', id: 7, retry: 10 });
        sse.push('l1\nl2\r\nl3');
        sse.push('');
        sse.push(null);
        sse.comment('note\nsecond line');
        sse.push('last');
      });
      expect(text.endsWith('\n\n')).toBe(true);
      expect(text).not.toContain('\n\n\n');
      // Six events, so six blank lines: a frame missing its blank line would merge with the next. The comment is lines
      // of its own with no blank line after it (several clients would dispatch an empty message there), so it leads the
      // frame of the event after it.
      const frames = text.split('\n\n');
      expect(frames.pop()).toBe('');
      expect(frames).toHaveLength(6);
      for (const frame of frames) expect(frame).not.toBe('');
      expect(frames[5]).toBe(': note\n: second line\ndata: last');
      expect(parseEvents(text).map((event) => event.data)).toEqual(['a', '{"b":1}', 'l1\nl2\nl3', '', 'null', 'last']);
    });
  });

  describe('comments', () => {
    it('comment(text) with line breaks produces only comments, never a field or an event', async () => {
      const client = await read((sse) => {
        sse.comment('first\nevent: admin\r\ndata: injected\rid: 9\n\nretry: 1');
        sse.push('after');
      });
      expect(client.comments).toEqual(['first', 'event: admin', 'data: injected', 'id: 9', '', 'retry: 1']);
      // The only event is the one pushed afterwards, with no name or id leaking into it from the comment.
      expect(client.events).toEqual([{ event: undefined, id: undefined, data: 'after' }]);
      expect(client.retries).toEqual([]);
      // Comment lines only, each starting with `:`, and no blank line until the one that ends the event.
      expect(client.raw()).toBe(': first\n: event: admin\n: data: injected\n: id: 9\n: \n: retry: 1\ndata: after\n\n');
    });
  });
});

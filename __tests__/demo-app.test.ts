/**
 * The demo app over real HTTP, read with a spec-following SSE parser: the event sequence a page relies on, the POST
 * variant, the failure path, and cancellation. The demo is plain JavaScript that requires the built package
 * (`express-sse-context` -> dist/), so `npm test` builds first.
 */
import type { Express } from 'express';
import type { Logger } from 'winston';
import TransportStream from 'winston-transport';
import type { EventSourceMessage } from 'eventsource-parser';
import { eventually, listen, openStream, type TestServer } from './helpers/sse-client';

interface DemoOptions {
  stepDelayMs?: number;
  tokenDelayMs?: number;
  logger?: Logger;
}
interface LoggerOptions {
  console?: boolean;
  transports?: TransportStream[];
}

function loadDemo(): {
  createApp: (options?: DemoOptions) => Express;
  createLogger: (options?: LoggerOptions) => Logger;
  composeAnswer: (message: string) => string;
} {
  try {
    /* eslint-disable @typescript-eslint/no-require-imports */
    return { ...require('../demo-app/app'), ...require('../demo-app/logger'), ...require('../demo-app/agent') };
  } catch (error) {
    throw new Error(`Could not load demo-app (it needs the built library: run \`npm run build\`; \`npm test\` does): ${String(error)}`, { cause: error });
  }
}
const { createApp, createLogger, composeAnswer } = loadDemo();

type Record_ = Record<string, unknown>;

/** A real winston transport that keeps every record the server logged: the server's log, readable by the test. */
class MemoryTransport extends TransportStream {
  readonly records: Record_[] = [];
  override log(info: Record_, next: () => void): void {
    this.records.push(info);
    next();
  }
}

interface Parsed {
  data: Record_ | string;
}

/** Each event's data, JSON-parsed unless it is the `[DONE]` terminator. */
function decode(events: EventSourceMessage[]): Parsed[] {
  return events.map((event) => ({ data: event.data === '[DONE]' ? '[DONE]' : (JSON.parse(event.data) as Record_) }));
}

const ofType = (parsed: Parsed[], type: string): Record_[] =>
  parsed.flatMap(({ data }) => (typeof data === 'object' && data.type === type ? [data] : []));
const indexOfType = (parsed: Parsed[], type: string, last = false): number => {
  const match = (p: Parsed): boolean => typeof p.data === 'object' && p.data.type === type;
  if (!last) return parsed.findIndex(match);
  for (let i = parsed.length - 1; i >= 0; i -= 1) if (match(parsed[i])) return i;
  return -1;
};

/** Checks the whole sequence of a successful run for `question`. */
function expectCompleteRun(parsed: Parsed[], question: string): void {
  // [DONE] once, and last.
  expect(parsed.at(-1)?.data).toBe('[DONE]');
  expect(parsed.filter((p) => p.data === '[DONE]')).toHaveLength(1);

  const statuses = ofType(parsed, 'status');
  expect(statuses.map((s) => s.step)).toEqual(['plan', 'search', 'draft', 'answer', 'done']);
  const progress = statuses.map((s) => s.progress as number);
  for (let i = 1; i < progress.length; i += 1) expect(progress[i]).toBeGreaterThan(progress[i - 1]);
  expect(progress.at(-1)).toBe(100);

  const logs = ofType(parsed, 'log');
  expect(logs.length).toBeGreaterThanOrEqual(3);
  for (const log of logs) {
    expect(typeof log.level).toBe('string');
    expect(typeof log.message).toBe('string');
    expect(log).not.toHaveProperty('serverOnly');
  }
  expect(logs.map((l) => l.message)).toContain(`Planning how to answer "${question}"`);

  const tokens = ofType(parsed, 'token');
  const responses = ofType(parsed, 'response');
  expect(responses).toHaveLength(1);
  const content = responses[0].content;
  expect(content).toBe(composeAnswer(question));
  expect(tokens.length).toBeGreaterThan(10);
  expect(tokens.map((t) => t.text).join('')).toBe(content);

  // Tokens stream during the answer step, the response follows the last token, [DONE] follows the response.
  const answerStep = parsed.findIndex((p) => typeof p.data === 'object' && p.data.type === 'status' && p.data.step === 'answer');
  expect(indexOfType(parsed, 'token')).toBeGreaterThan(answerStep);
  expect(indexOfType(parsed, 'response')).toBeGreaterThan(indexOfType(parsed, 'token', true));
  expect(ofType(parsed, 'error')).toEqual([]);
}

describe('demo app over HTTP', () => {
  const memory = new MemoryTransport();
  let fast: TestServer;
  /** Long pauses between tokens, so a client can leave in the middle of the answer. */
  let slow: TestServer;

  beforeAll(async () => {
    const logger = createLogger({ console: false, transports: [memory] });
    fast = await listen(createApp({ stepDelayMs: 4, tokenDelayMs: 1, logger }));
    slow = await listen(createApp({ stepDelayMs: 4, tokenDelayMs: 300, logger }));
  });
  afterAll(async () => {
    await fast?.close();
    await slow?.close();
  });

  it('GET /chat/stream sends status steps, logs, tokens, the response and [DONE] last', async () => {
    const question = 'How do otters sleep?';
    const client = await openStream(`${fast.url}/chat/stream?message=${encodeURIComponent(question)}`);
    expect(client.status).toBe(200);
    expect(client.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    await client.ended;
    expectCompleteRun(decode(client.events), question);
  });

  it('POST /chat/stream with a JSON body runs the same agent', async () => {
    const question = 'Posted question';
    const client = await openStream(`${fast.url}/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: question }),
    });
    expect(client.status).toBe(200);
    await client.ended;
    expectCompleteRun(decode(client.events), question);
  });

  it('streams through compression(): uncompressed, and events arrive while the stream is open', async () => {
    const client = await openStream(`${slow.url}/chat/stream?message=gzip`, { headers: { 'accept-encoding': 'gzip, deflate, br' } });
    expect(client.headers['content-encoding']).toBeUndefined();
    // The first token arrives while the agent still has most of the answer to go (300 ms a token).
    const first = await client.waitForEvent((event) => event.data.includes('"type":"token"'), 15000);
    expect(JSON.parse(first.data)).toEqual({ type: 'token', text: 'You ' });
    expect(client.events.some((event) => event.data === '[DONE]')).toBe(false);
    client.abort();
    // The page and its script, by contrast, are compressed.
    const page = await fetch(`${slow.url}/`, { headers: { 'accept-encoding': 'gzip' } });
    expect(page.headers.get('content-encoding')).toBe('gzip');
    expect(await page.text()).toContain('Agent console');
  });

  it('a failing agent sends one safe error event and [DONE]; the server keeps serving', async () => {
    const client = await openStream(`${fast.url}/chat/stream?message=fail`);
    expect(client.status).toBe(200);
    await client.ended;
    const parsed = decode(client.events);
    expect(ofType(parsed, 'error')).toEqual([{ type: 'error', message: 'Internal Server Error' }]);
    expect(parsed.at(-1)?.data).toBe('[DONE]');
    expect(indexOfType(parsed, 'error')).toBe(parsed.length - 2);
    expect(ofType(parsed, 'token')).toEqual([]);
    expect(ofType(parsed, 'response')).toEqual([]);
    expect(ofType(parsed, 'status').map((s) => s.step)).toEqual(['plan', 'search']);
    // The agent's own (safe) error line reaches the page; the internals stay in the server's log.
    expect(ofType(parsed, 'log').map((l) => l.message)).toContain('The web search tool crashed');
    expect(client.raw()).not.toMatch(/10\.0\.0\.7|ECONNRESET|agent\.js|\bat search\b/);
    await eventually(() => memory.records.some((r) => r.serverOnly === true && String(r.stack).includes('10.0.0.7')), 5000, 'the server-side error record');

    const again = await openStream(`${fast.url}/chat/stream?message=${encodeURIComponent('after the failure')}`);
    await again.ended;
    expectCompleteRun(decode(again.events), 'after the failure');
  });

  it('a client leaving mid-answer aborts the signal: the agent stops and logs it on the server', async () => {
    const question = 'leave early';
    const client = await openStream(`${slow.url}/chat/stream?message=${encodeURIComponent(question)}`);
    await client.waitForEvent((event) => event.data.includes('"type":"token"'), 15000);
    client.abort();
    const isStop = (r: Record_): boolean => r.agent === 'stopped' && r.question === question;
    await eventually(() => memory.records.some(isStop), 10000, 'the agent to log that it stopped');
    const stop = memory.records.find(isStop)!;
    expect(stop.step).toBe('answer');
    expect(stop.message).toBe('Agent stopped during "answer": The client disconnected');
    expect(stop.tokensSent).toBeGreaterThanOrEqual(1);
    expect(stop.tokensSent as number).toBeLessThan(stop.tokensTotal as number);
  });

  it('two concurrent streams each receive only their own logs', async () => {
    const [a, b] = await Promise.all([
      openStream(`${fast.url}/chat/stream?message=alpha-question`),
      openStream(`${fast.url}/chat/stream?message=bravo-question`),
    ]);
    await Promise.all([a.ended, b.ended]);
    const logsA = ofType(decode(a.events), 'log').map((l) => String(l.message));
    const logsB = ofType(decode(b.events), 'log').map((l) => String(l.message));
    expect(logsA.some((m) => m.includes('alpha-question'))).toBe(true);
    expect(logsB.some((m) => m.includes('bravo-question'))).toBe(true);
    expect(logsA.filter((m) => m.includes('bravo'))).toEqual([]);
    expect(logsB.filter((m) => m.includes('alpha'))).toEqual([]);
  });

  it('answers 400 with JSON, not a stream, for a missing message or a bad body', async () => {
    const missing = await fetch(`${fast.url}/chat/stream`);
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual({ error: 'Send a non-empty "message".' });
    const badJson = await fetch(`${fast.url}/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"message":',
    });
    expect(badJson.status).toBe(400);
    expect(badJson.headers.get('content-type')).toMatch(/^application\/json/);
  });
});

/**
 * The Vercel AI SDK's own client (`DefaultChatTransport`, `readUIMessageStream`) against the example server of
 * examples/ai-chat and against routes of this script, over real HTTP on 127.0.0.1. The SDK is an ES module only, so
 * `__tests__/sdk/ai-sdk.test.ts` runs this script in a child process and checks the JSON it prints: one object
 * with what each scenario observed. `--redis-port N` keeps the answers in a RedisStore on that server.
 */
import { parseArgs } from 'node:util';
import express from 'express';
import winston from 'winston';
import { DefaultChatTransport, readUIMessageStream } from 'ai';
import { aiSdkUiMessageStream, sseErrorHandler, sseStream, SseTransport } from 'express-sse-context';
import { createChatApp } from '../../examples/ai-chat/app.mjs';
import { mockAnswer, mockModel } from '../../examples/ai-chat/mock-model.mjs';

const { values: args } = parseArgs({ options: { 'redis-port': { type: 'string' } } });
const logger = winston.createLogger({ transports: [new SseTransport()] });

let store;
let redis;
if (args['redis-port'] !== undefined) {
  const { default: Redis } = await import('ioredis');
  const { RedisStore } = await import('express-sse-context/redis');
  redis = new Redis({ host: '127.0.0.1', port: Number(args['redis-port']), lazyConnect: false });
  store = new RedisStore({ client: redis });
}

const app = createChatApp({ model: mockModel({ delayMs: 15 }), logger, store });

// Routes of this script: a mid-stream failure, and the same stream without the preset.
app.post('/fails', express.json(), sseStream({ ...aiSdkUiMessageStream() }), async (_req, res) => {
  async function* failing() {
    yield { type: 'start' };
    yield { type: 'text-start', id: 't' };
    yield { type: 'text-delta', id: 't', delta: 'Looking that up' };
    logger.info('calling the search tool');
    throw new Error('search backend down (internal detail)');
  }
  await res.sse.pipe(failing());
  await res.sse.close();
});
app.post('/no-preset', express.json(), sseStream({ done: '[DONE]' }), async (_req, res) => {
  res.sse.push({ type: 'start' });
  logger.info('a log record in the middle of the answer');
  res.sse.push({ type: 'finish' });
  await res.sse.close();
});
app.use(sseErrorHandler());

const server = await new Promise((resolve) => {
  const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
});
const base = `http://127.0.0.1:${server.address().port}`;

const userMessage = (id, text) => ({ id, role: 'user', parts: [{ type: 'text', text }] });

/** Reads a UI message stream to its end: every chunk (each already checked by the SDK's schema), or the error. */
async function readChunks(stream, { stopAfterDeltas, controller } = {}) {
  const chunks = [];
  let error;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      if (stopAfterDeltas !== undefined && chunks.filter((chunk) => chunk.type === 'text-delta').length >= stopAfterDeltas) {
        controller.abort();
        break;
      }
    }
  } catch (caught) {
    error = { name: caught?.name, message: String(caught?.message) };
  }
  return { chunks, error };
}

/** The assistant message the SDK assembles from `chunks`, as useChat keeps it. */
async function assemble(chunks) {
  let message;
  const stream = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  for await (const snapshot of readUIMessageStream({ stream })) message = snapshot;
  return message;
}

const textOf = (message) => message?.parts.filter((part) => part.type === 'text').map((part) => part.text).join('') ?? '';
const summary = ({ chunks, error }) => ({
  types: [...new Set(chunks.map((chunk) => chunk.type))],
  logs: chunks.filter((chunk) => chunk.type === 'data-log').map((chunk) => ({ ...chunk.data, transient: chunk.transient })),
  errors: chunks.filter((chunk) => chunk.type === 'error').map((chunk) => chunk.errorText),
  readError: error,
});

const transport = new DefaultChatTransport({ api: `${base}/api/chat` });
const result = { store: store === undefined ? 'memory' : 'redis' };

// 1. Send a message: the answer streams as UI message parts; the request's logs arrive as transient data parts.
{
  const question = 'What are Server-Sent Events?';
  const read = await readChunks(await transport.sendMessages({ chatId: 'chat-1', messages: [userMessage('u1', question)], trigger: 'submit-message' }));
  const message = await assemble(read.chunks);
  result.send = { ...summary(read), text: textOf(message), expected: mockAnswer(question), keptParts: message?.parts.map((part) => part.type) };
}

// 2. The connection drops mid-answer; reconnectToStream() follows the answer still in progress, from its start.
{
  const question = 'Does the answer survive a dropped connection?';
  const controller = new AbortController();
  const first = await readChunks(
    await transport.sendMessages({ chatId: 'chat-2', messages: [userMessage('u1', question)], trigger: 'submit-message', abortSignal: controller.signal }),
    { stopAfterDeltas: 3, controller },
  );
  const resumed = await transport.reconnectToStream({ chatId: 'chat-2' });
  const replay = resumed === null ? { chunks: [] } : await readChunks(resumed);
  const message = await assemble(replay.chunks);
  // Once the answer is over, there is nothing to resume: 204, which the SDK reports as null.
  const afterEnd = await transport.reconnectToStream({ chatId: 'chat-2' });
  const neverStarted = await transport.reconnectToStream({ chatId: 'no-such-chat' });
  result.resume = {
    deltasBeforeDrop: first.chunks.filter((chunk) => chunk.type === 'text-delta').length,
    resumedNull: resumed === null,
    ...summary(replay),
    text: textOf(message),
    expected: mockAnswer(question),
    afterEndNull: afterEnd === null,
    unknownChatNull: neverStarted === null,
  };
}

// 3. The second message of a chat gets its own answer, not a replay of the first.
{
  const messages = [userMessage('u1', 'First question?')];
  const first = await assemble((await readChunks(await transport.sendMessages({ chatId: 'chat-3', messages, trigger: 'submit-message' }))).chunks);
  const second = await assemble(
    (
      await readChunks(
        await transport.sendMessages({
          chatId: 'chat-3',
          messages: [...messages, first, userMessage('u2', 'Second question?')],
          trigger: 'submit-message',
        }),
      )
    ).chunks,
  );
  result.secondMessage = { first: textOf(first), second: textOf(second), expected: mockAnswer('Second question?') };
}

// 4. Stop: the answer in progress ends early, for every client following it.
{
  const stream = await transport.sendMessages({ chatId: 'chat-4', messages: [userMessage('u1', 'A long question to stop')], trigger: 'submit-message' });
  const reading = readChunks(stream);
  await new Promise((resolve) => setTimeout(resolve, 60));
  const stopped = await (await fetch(`${base}/api/chat/chat-4/stop`, { method: 'POST' })).json();
  const read = await reading;
  result.stop = { stopped: stopped.stopped, ...summary(read), text: textOf(await assemble(read.chunks)), full: mockAnswer('A long question to stop') };
}

// 5. An error in the middle of the stream arrives as the SDK's own error part.
{
  const failing = new DefaultChatTransport({ api: `${base}/fails` });
  const read = await readChunks(await failing.sendMessages({ chatId: 'chat-5', messages: [userMessage('u1', 'Search, please')], trigger: 'submit-message' }));
  result.midStreamError = summary(read);
}

// 6. Without the preset, the first log event fails the SDK's schema.
{
  const plain = new DefaultChatTransport({ api: `${base}/no-preset` });
  const read = await readChunks(await plain.sendMessages({ chatId: 'chat-6', messages: [userMessage('u1', 'Hello')], trigger: 'submit-message' }));
  result.withoutPreset = summary(read);
}

process.stdout.write(`${JSON.stringify(result)}\n`);
server.closeAllConnections();
server.close();
await store?.close();
redis?.disconnect();

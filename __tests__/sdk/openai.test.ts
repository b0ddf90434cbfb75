/**
 * The OpenAI SDK (`openai`) reading a route that speaks its chat completions stream with `openAiChatStream()`.
 */
import express, { type Response } from 'express';
import OpenAI, { APIError } from 'openai';
import winston from 'winston';
import { openAiChatStream, sseErrorHandler, sseStream, SseTransport } from '../../lib';
import { listen, type TestServer } from '../helpers/sse-client';

const logger = winston.createLogger({ transports: [new SseTransport()] });
const ANSWER = ['Otters ', 'hold ', 'hands ', 'while ', 'they ', 'sleep', ', so they ', 'don’t drift apart. ', '🦦'];

/** One `chat.completion.chunk`, as the OpenAI API streams it. */
function chunk(content: string | undefined, finish: 'stop' | null = null) {
  return {
    id: 'chatcmpl-test',
    object: 'chat.completion.chunk',
    created: 1_765_000_000,
    model: 'mock-model',
    choices: [{ index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish }],
  };
}

/** The route's work: it logs as it goes (as real work does), and can fail after some tokens. */
async function complete(res: Response, failAfter: number | undefined): Promise<void> {
  const route = res.sse;
  async function* model() {
    logger.info('calling the model', { model: 'mock-model' });
    for (const [index, token] of ANSWER.entries()) {
      if (index === failAfter) throw new Error('upstream overloaded (internal detail)');
      logger.info('token', { index });
      yield chunk(token);
    }
    yield chunk(undefined, 'stop');
  }
  await route.pipe(model());
  await route.close();
}

describe('the OpenAI SDK reads an openAiChatStream() route', () => {
  let server: TestServer;
  let client: OpenAI;

  beforeAll(async () => {
    const app = express();
    // `.catch(next)`: Express 4 (npm run test:express4) does not route a rejected promise to the error handler.
    app.post('/v1/chat/completions', express.json(), sseStream({ ...openAiChatStream() }), (req, res, next) => {
      complete(res, req.body.messages?.[0]?.content === 'fail' ? 3 : undefined).catch(next);
    });
    app.post('/plain/chat/completions', express.json(), sseStream({ done: '[DONE]' }), (_req, res, next) => {
      complete(res, undefined).catch(next);
    });
    app.use(sseErrorHandler());
    server = await listen(app);
    client = new OpenAI({ apiKey: 'test-key', baseURL: `${server.url}/v1`, maxRetries: 0 });
  });

  afterAll(() => server.close());

  test('the text reassembles exactly while the route logs; the stream ends at [DONE]', async () => {
    const stream = await client.chat.completions.create({ model: 'mock-model', messages: [{ role: 'user', content: 'otters?' }], stream: true });
    let text = '';
    const finishes: unknown[] = [];
    for await (const part of stream) {
      text += part.choices[0]?.delta?.content ?? '';
      finishes.push(part.choices[0]?.finish_reason);
    }
    expect(text).toBe(ANSWER.join(''));
    expect(finishes.at(-1)).toBe('stop');
    expect(finishes).toHaveLength(ANSWER.length + 1);
  });

  test('an error in the middle of the stream raises an APIError with the safe message', async () => {
    const stream = await client.chat.completions.create({ model: 'mock-model', messages: [{ role: 'user', content: 'fail' }], stream: true });
    let text = '';
    const failure = await (async () => {
      try {
        for await (const part of stream) text += part.choices[0]?.delta?.content ?? '';
        return undefined;
      } catch (error) {
        return error;
      }
    })();
    expect(text).toBe(ANSWER.slice(0, 3).join(''));
    expect(failure).toBeInstanceOf(APIError);
    expect((failure as APIError).message).toContain('Internal Server Error');
    expect((failure as APIError).message).not.toContain('internal detail');
    expect((failure as APIError).type).toBe('server_error');
  });

  test('without the preset, the first log event reaches the SDK as a chunk and the usual read throws', async () => {
    const plain = new OpenAI({ apiKey: 'test-key', baseURL: `${server.url}/plain`, maxRetries: 0 });
    const stream = await plain.chat.completions.create({ model: 'mock-model', messages: [{ role: 'user', content: 'otters?' }], stream: true });
    const failure = await (async () => {
      try {
        for await (const part of stream) void part.choices[0]?.delta?.content;
        return undefined;
      } catch (error) {
        return error;
      }
    })();
    expect(failure).toBeInstanceOf(TypeError);
  });
});

/**
 * A language model that runs offline: it answers every question with a canned text, word by word, as a real model
 * streams tokens. Swap it for a real provider (`openai('gpt-4o-mini')` from `@ai-sdk/openai`) in `server.mjs`.
 */
import { simulateReadableStream } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';

/** The answer to `question`: what the mock model streams. */
export function mockAnswer(question) {
  return `You asked: "${question}". Server-Sent Events keep one HTTP response open and push each event as it happens, so tokens reach the page as soon as the model makes them.`;
}

/**
 * @param {{ delayMs?: number }} [options] milliseconds between words (default 40)
 * @returns {MockLanguageModelV4}
 */
export function mockModel({ delayMs = 40 } = {}) {
  return new MockLanguageModelV4({
    modelId: 'mock-model',
    doStream: async ({ prompt }) => {
      const lastUser = prompt.findLast((message) => message.role === 'user');
      const question = lastUser?.content.map((part) => (part.type === 'text' ? part.text : '')).join('') ?? '';
      const words = mockAnswer(question).split(/(?<= )/);
      return {
        stream: simulateReadableStream({
          chunkDelayInMs: delayMs,
          chunks: [
            { type: 'stream-start', warnings: [] },
            { type: 'text-start', id: 'answer' },
            ...words.map((delta) => ({ type: 'text-delta', id: 'answer', delta })),
            { type: 'text-end', id: 'answer' },
            {
              type: 'finish',
              finishReason: { unified: 'stop', raw: 'stop' },
              usage: { inputTokens: { total: question.length }, outputTokens: { total: words.length } },
            },
          ],
        }),
      };
    },
  });
}

/**
 * An Express server that any `useChat` front end (the Vercel AI SDK's `DefaultChatTransport`) can talk to:
 *
 *   POST /api/chat              { id, messages }: a new answer for chat `id`, streamed as the AI SDK's UI message
 *                               stream; it runs as a resumable run of the chat, so it goes on if the page drops
 *   GET  /api/chat/:id/stream   useChat({ resume: true }): follows the chat's answer in progress from its start,
 *                               or answers 204 No Content when there is none
 *   POST /api/chat/:id/stop     stops the chat's answer in progress (the model call is aborted)
 *
 * The request's own logs reach its page as transient `data-log` parts (`onData` in useChat), never as text.
 */
import express from 'express';
import { convertToModelMessages, streamText } from 'ai';
import { abortRun, aiSdkUiMessageStream, sseErrorHandler, sseStream } from 'express-sse-context';

/**
 * @param {object} options
 * @param {import('ai').LanguageModel} options.model the model that answers
 * @param {import('winston').Logger} options.logger the app's logger, with an `SseTransport`
 * @param {import('express-sse-context').ResumeStore} [options.store] where answers are kept (default: in memory;
 *   a `RedisStore` for many instances)
 * @returns {import('express').Express}
 */
export function createChatApp({ model, logger, store }) {
  const app = express();
  app.disable('x-powered-by');
  /** One answer per chat at a time, kept for clients that come back; `mode` says what a request does with it. */
  const chatStream = (mode, key) => sseStream({ ...aiSdkUiMessageStream(), resume: { key, mode, store } });

  app.post(
    '/api/chat',
    express.json({ limit: '1mb' }),
    (req, res, next) => {
      const { id, messages } = req.body ?? {};
      if (typeof id !== 'string' || id === '' || !Array.isArray(messages)) {
        res.status(400).json({ error: 'expected a JSON body { id, messages }' });
        return;
      }
      next();
    },
    // 'start': every message starts a new answer for the chat; one still in progress is stopped first.
    chatStream('start', (req) => req.body.id),
    async (req, res) => {
      const { id, messages } = req.body;
      logger.info('Answering', { chat: id, messages: messages.length });
      const result = streamText({
        model,
        messages: await convertToModelMessages(messages),
        // Aborted by POST /api/chat/:id/stop, by the next message of the chat, or when the run outlives its ttl;
        // not when the page drops: the answer goes on for the page that comes back.
        abortSignal: res.sse.signal,
        onFinish: ({ usage }) => logger.info('Answer complete', { chat: id, outputTokens: usage.outputTokens }),
      });
      await res.sse.pipe(result.toUIMessageStream());
      await res.sse.close();
    },
  );

  // 'follow': never starts an answer; follows the one in progress, or 204 when there is none.
  app.get('/api/chat/:id/stream', chatStream('follow', (req) => req.params.id));

  app.post('/api/chat/:id/stop', async (req, res) => {
    res.json({ stopped: await abortRun(req.params.id, store) });
  });

  app.use(sseErrorHandler());
  return app;
}

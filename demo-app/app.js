'use strict';
/**
 * The demo's Express app: a static "agent console" page and the stream it reads.
 *
 *   GET  /chat/runs/:run/stream?message=... (what the page's EventSource opens: a resumable run, see below)
 *   POST /chat/runs/:run/stop              (the page's Stop button: abortRun())
 *   GET  /chat/stream?message=...          (the same agent as a plain stream, which stops when the client goes)
 *   POST /chat/stream  {"message": "..."}   (the same for the page's readEvents(), fetch() and curl)
 *   GET  /vendor/...                     (express-sse-context/client and eventsource-parser, as browser modules)
 *
 * Each stream carries `{type:"status"}`, `{type:"log"}`, `{type:"token"}` and `{type:"response"}` events, then the
 * `[DONE]` terminator; a failure midway becomes one `{type:"error"}` event.
 */
const path = require('node:path');
const express = require('express');
const compression = require('compression');
const { abortRun, sseStream, sseErrorHandler } = require('express-sse-context');
const { createAgent } = require('./agent');
const { logger: appLogger } = require('./logger');

const MAX_MESSAGE_LENGTH = 500;

/**
 * The browser modules the page imports: the library's client, as built to dist/esm (`npm start` builds it): its
 * folder and the one module of the library it imports; and the ES module build of the one package it imports,
 * which the page's import map resolves `eventsource-parser` to.
 */
const LIBRARY_ESM = path.join(path.dirname(require.resolve('express-sse-context/package.json')), 'dist/esm');
const BROWSER_MODULES = {
  '/vendor/express-sse-context/options.js': path.join(LIBRARY_ESM, 'options.js'),
  '/vendor/eventsource-parser.js': path.join(path.dirname(require.resolve('eventsource-parser/package.json')), 'dist/index.js'),
};

/**
 * @param {object} [options]
 * @param {number} [options.stepDelayMs] simulated work per agent step (default 450)
 * @param {number} [options.tokenDelayMs] pause between answer tokens (default 45)
 * @param {import('winston').Logger} [options.logger] the app's logger (default: `./logger`'s module-level logger)
 * @returns {import('express').Express}
 */
function createApp({ stepDelayMs, tokenDelayMs, logger = appLogger } = {}) {
  const agent = createAgent({ logger, stepDelayMs, tokenDelayMs });
  const app = express();
  app.disable('x-powered-by');

  // Compresses the page and its assets; event streams pass through untouched (they are sent with
  // `Cache-Control: no-transform`), so no event ever waits in a gzip buffer.
  app.use(compression());
  app.use(express.static(path.join(__dirname, 'public')));
  for (const [route, file] of Object.entries(BROWSER_MODULES)) app.get(route, (_req, res) => res.sendFile(file));
  app.use('/vendor/express-sse-context/client', express.static(path.join(LIBRARY_ESM, 'client'), { extensions: false, index: false }));

  // One stream setup for both routes: `close()` sends `data: [DONE]` last, which tells the page to close its
  // EventSource instead of reconnecting (and running the agent again).
  const stream = sseStream({ done: '[DONE]' });

  app.get('/chat/stream', requireMessage((req) => req.query.message), stream, chat);
  app.post('/chat/stream', express.json({ limit: '16kb' }), requireMessage((req) => req.body?.message), stream, chat);

  // The page's question as a resumable run: the agent goes on when the connection drops, and the page's EventSource
  // (or a new one with ?lastEventId=) gets exactly what it missed, then the rest. Stop is an explicit abortRun().
  const resumable = sseStream({ done: '[DONE]', resume: { key: (req) => `chat:${req.params.run}` } });
  app.get('/chat/runs/:run/stream', requireMessage((req) => req.query.message), lastEventIdFromQuery, resumable, chat);
  app.post('/chat/runs/:run/stop', async (req, res) => {
    res.json({ stopped: await abortRun(`chat:${req.params.run}`) });
  });

  async function chat(_req, res) {
    const answer = await agent.run(res.locals.message, { signal: res.sse.signal });
    if (answer === null) return; // the client went away; the stream is already closed
    res.sse.push({ type: 'response', content: answer });
    await res.sse.close();
  }

  // Errors: log the details on the server only, then let sseErrorHandler() send the page a safe error event.
  app.use((error, _req, _res, next) => {
    logger.error(`Request failed: ${error instanceof Error ? error.message : String(error)}`, {
      serverOnly: true,
      stack: error instanceof Error ? error.stack : undefined,
    });
    next(error);
  });
  app.use(sseErrorHandler());
  // Errors before a stream opened (bad JSON, say) get an ordinary JSON error response.
  app.use((error, _req, res, _next) => {
    const status = Number.isInteger(error?.status) && error.status >= 400 && error.status < 600 ? error.status : 500;
    res.status(status).json({ error: error?.expose === true ? error.message : 'Internal Server Error' });
  });

  return app;
}

/**
 * A new EventSource cannot send headers, so a page that reopens one itself passes the last id it saw as
 * `?lastEventId=`; EventSource's own reconnections send the `Last-Event-ID` header, which wins.
 */
function lastEventIdFromQuery(req, _res, next) {
  const { lastEventId } = req.query;
  if (typeof lastEventId === 'string' && req.get('Last-Event-ID') === undefined) req.headers['last-event-id'] = lastEventId;
  next();
}

/** Reads the message with `pick`; answers 400 before any stream opens when it is missing, empty or too long. */
function requireMessage(pick) {
  return function checkMessage(req, res, next) {
    const message = pick(req);
    if (typeof message !== 'string' || message.trim() === '') {
      res.status(400).json({ error: 'Send a non-empty "message".' });
      return;
    }
    if (message.length > MAX_MESSAGE_LENGTH) {
      res.status(400).json({ error: `"message" is longer than ${MAX_MESSAGE_LENGTH} characters.` });
      return;
    }
    res.locals.message = message.trim();
    next();
  };
}

module.exports = { createApp };

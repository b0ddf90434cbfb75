// This library through pino: every event is a logger.info() call that sseDestination() forwards to the stream of
// the request that logged it, in the same loop as lib-transport.mjs's /forward. `base: undefined` and
// `timestamp: false` make pino's line `{"level":30,"i":…,"t":…,"p":"…","msg":"bench"}`, so the client gets the same
// event as from the other two: {"type":"log","level":"info","message":"bench","i":…,"t":…,"p":"…"}.
import express from 'express';
import pino from 'pino';
import { sseDestination, sseStream } from 'express-sse-context';
import { payload, produce, query, serve } from './common.mjs';

const logger = pino({ level: 'info', base: undefined, timestamp: false }, sseDestination());
const app = express();

app.get('/forward', sseStream(), async (req, res) => {
  await produce(res, query(req.url).n, (i) => logger.info(payload(i), 'bench'));
  await res.sse.close();
});

serve(app);

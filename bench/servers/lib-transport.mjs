// This library through winston: every event is a logger.info() call that SseTransport forwards to the stream of
// the request that logged it. A log call has no backpressure: the loops run as common.mjs's produce() says.
import express from 'express';
import winston from 'winston';
import { SseTransport, sseStream } from 'express-sse-context';
import { payload, produce, query, serve } from './common.mjs';

const logger = winston.createLogger({ level: 'info', transports: [new SseTransport()] });
const app = express();
const sse = sseStream();

// Each record reaches the client as {"type":"log","level":"info","message":"bench","i":…,"t":…,"p":"…"}.
const log = (i) => logger.info('bench', payload(i));

async function logLoop(req, res) {
  await produce(res, query(req.url).n, log);
  await res.sse.close();
}

app.get('/stream', sse, logLoop);
app.get('/forward', sse, logLoop);

app.get('/tick', sse, (req, res) => {
  const { n, interval } = query(req.url);
  let i = 0;
  const timer = setInterval(() => {
    log(i);
    if (++i === n) {
      clearInterval(timer);
      void res.sse.close();
    }
  }, interval);
  res.sse.signal.addEventListener('abort', () => clearInterval(timer));
});

app.get('/idle', sse, () => {
  log(0);
});

serve(app);

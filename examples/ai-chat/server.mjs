/**
 * Starts the example: `npm run build` once at the top of the repository, then `node examples/ai-chat/server.mjs`.
 * Listens on 127.0.0.1:PORT (default 3001). With REDIS_URL set, answers are kept in Redis, so any number of
 * instances can serve the same chats.
 */
import winston from 'winston';
import { SseTransport } from 'express-sse-context';
import { createChatApp } from './app.mjs';
import { mockModel } from './mock-model.mjs';

const logger = winston.createLogger({
  transports: [new winston.transports.Console({ format: winston.format.simple() }), new SseTransport()],
});

let store;
let redis;
if (process.env.REDIS_URL) {
  const { default: Redis } = await import('ioredis');
  const { RedisStore } = await import('express-sse-context/redis');
  redis = new Redis(process.env.REDIS_URL);
  store = new RedisStore({ client: redis });
}

const port = Number(process.env.PORT ?? 3001);
const server = createChatApp({ model: mockModel(), logger, store }).listen(port, '127.0.0.1', () => {
  logger.info(`AI chat example listening on http://127.0.0.1:${server.address().port} (${store ? 'Redis' : 'memory'} store)`);
});

function shutdown() {
  server.close();
  server.closeAllConnections();
  void store?.close();
  redis?.disconnect();
}
process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);

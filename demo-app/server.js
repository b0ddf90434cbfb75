'use strict';
/**
 * Starts the demo: `npm start` (builds the library first), or `node demo-app/server.js` after `npm run build`.
 * Listens on PORT (default 3000) and prints the URL to open.
 */
const { createApp } = require('./app');
const { logger } = require('./logger');

const port = Number(process.env.PORT ?? 3000);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`PORT must be a port number, got ${JSON.stringify(process.env.PORT)}`);
  process.exit(1);
}

const server = createApp().listen(port, (error) => {
  if (error) {
    console.error(
      error.code === 'EADDRINUSE'
        ? `Port ${port} is already in use. Start the demo on another one: PORT=3001 npm start`
        : `Could not start the demo: ${error.message}`,
    );
    process.exit(1);
  }
  const { port: actual } = server.address();
  logger.info(`Agent console demo running at http://localhost:${actual}  (Ctrl+C to stop)`);
});

function shutdown(signal) {
  logger.info(`${signal} received, closing the open streams and stopping`);
  server.close(() => process.exit(0));
  // Open event streams would keep close() waiting: dropping them aborts each one's signal, which stops its agent.
  server.closeAllConnections();
}
process.once('SIGINT', () => shutdown('SIGINT'));
process.once('SIGTERM', () => shutdown('SIGTERM'));

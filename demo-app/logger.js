'use strict';
/**
 * The demo's one application logger: an ordinary module-level winston logger.
 *
 * It writes every record to the server's console, and `SseTransport` sends each record to the browser of the request
 * whose work logged it (and to no other). Code anywhere in the app just calls `logger.info()`; it never needs `req`
 * or `res` to reach the right browser.
 */
const winston = require('winston');
const { SseTransport } = require('express-sse-context');

/** Fields that describe the record itself rather than what was logged; the console shows the rest as JSON. */
const OWN_FIELDS = new Set(['level', 'message', 'timestamp', 'serverOnly']);

/**
 * Records marked `serverOnly: true` (stack traces, internals) go to the console but never to a browser: the README's
 * advice to give `SseTransport` a format that filters what the page must not see.
 */
const browserSafe = winston.format((info) => (info.serverOnly ? false : info));

const consoleLine = winston.format.printf((info) => {
  const fields = {};
  for (const key of Object.keys(info)) if (!OWN_FIELDS.has(key) && key !== 'stack') fields[key] = info[key];
  const extra = Object.keys(fields).length > 0 ? ` ${safeJson(fields)}` : '';
  const stack = typeof info.stack === 'string' ? `\n${info.stack}` : '';
  return `${info.timestamp} ${info.level.padEnd(5)} ${info.message}${extra}${stack}`;
});

function safeJson(value) {
  try {
    return JSON.stringify(value);
  } catch {
    return '[unserialisable fields]';
  }
}

/**
 * Builds a logger like the demo's: console output plus `SseTransport`.
 *
 * @param {object} [options]
 * @param {boolean} [options.console=true] write to the server's console (tests turn it off to keep their output clean)
 * @param {import('winston-transport')[]} [options.transports] more transports, e.g. one a test reads records from
 * @param {string} [options.level='info']
 */
function createLogger({ console = true, transports = [], level = 'info' } = {}) {
  return winston.createLogger({
    level,
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true })),
    transports: [
      new winston.transports.Console({ format: consoleLine, silent: !console }),
      new SseTransport({ format: browserSafe() }),
      ...transports,
    ],
  });
}

/** The logger the demo's agent uses. */
const logger = createLogger();

module.exports = { logger, createLogger };

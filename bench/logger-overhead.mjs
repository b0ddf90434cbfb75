/**
 * Workload 6, in-process: what SseTransport adds to a logger.info() call made outside any request. Two loggers
 * with the same null transport (and winston's default json format), one of them with SseTransport attached
 * too (and, for reference, one with a second null transport); rounds rotate between them and each reports its
 * median ns per call. Prints one line of JSON.
 *
 *   node bench/logger-overhead.mjs [--calls N] [--rounds R]
 */
import { parseArgs } from 'node:util';
import winston from 'winston';
import TransportStream from 'winston-transport';
import { SseTransport } from 'express-sse-context';
import { exitWithParent, payload } from './servers/common.mjs';

const { values: args } = parseArgs({ options: { calls: { type: 'string', default: '100000' }, rounds: { type: 'string', default: '10' } } });
const calls = Number(args.calls);
const rounds = Number(args.rounds);

/** A transport that drops every record (winston's own Stream transport costs a setImmediate per record). */
class NullTransport extends TransportStream {
  log(_info, done) {
    done();
  }
}
const sink = () => new NullTransport();
const loggers = {
  without: winston.createLogger({ level: 'info', transports: [sink()] }),
  with: winston.createLogger({ level: 'info', transports: [sink(), new SseTransport()] }),
  // For reference: what any second transport costs winston, however little it does.
  withNull: winston.createLogger({ level: 'info', transports: [sink(), sink()] }),
};

/** A logger is a stream: a synchronous burst of calls is queued, and processed on later ticks. Time both. */
async function nsPerCall(logger, count) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) logger.info('bench', payload(i));
  while (logger.writableLength > 0 || logger.readableLength > 0) await new Promise((resolve) => setImmediate(resolve));
  return Number(process.hrtime.bigint() - start) / count;
}

exitWithParent();
for (const logger of Object.values(loggers)) await nsPerCall(logger, Math.min(calls, 50_000)); // warm-up
const names = Object.keys(loggers);
const samples = Object.fromEntries(names.map((name) => [name, []]));
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < names.length; k++) {
    const name = names[(r + k) % names.length]; // a different order each round
    samples[name].push(await nsPerCall(loggers[name], calls));
  }
}
const median = (values) => values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)];
const [withoutNs, withNs, withNullNs] = names.map((name) => median(samples[name]));
process.stdout.write(`${JSON.stringify({ withoutNs, withNs, withNullNs, overhead: withNs / withoutNs - 1, nullOverhead: withNullNs / withoutNs - 1 })}\n`);

/**
 * What the pino tests share: a recording destination (the app's "other" destination, which must get every line),
 * the parsing of log events, and the event a line should become.
 */
import type { DestinationStream } from 'pino';

/** A plain pino destination that keeps every line it is handed, as a file or stdout would get it. */
export interface Recorder extends DestinationStream {
  lines: string[];
  write(line: string): void;
}

export function recorder(): Recorder {
  const lines: string[] = [];
  return { lines, write: (line: string) => void lines.push(line) };
}

export type Json = Record<string, unknown>;

/** Parses one event's data, which must be a JSON object. */
export function parseObject(data: string): Json {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    throw new Error(`event data is not JSON: ${data.slice(0, 300)}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`event data is not a JSON object: ${data.slice(0, 300)}`);
  return value as Json;
}

const STANDARD_LABELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/**
 * The event a pino line should become, as `JSON.parse` reads both: `type: 'log'`, the level's name, the message key's
 * value as `message`, and every other member except `type`, `level` and `message`.
 */
export function expectedEvent(line: string, options: { level?: string; messageKey?: string } = {}): Json {
  const record = parseObject(line);
  const messageKey = options.messageKey ?? 'msg';
  const { level } = record;
  const text = record[messageKey];
  for (const key of ['type', 'level', 'message', messageKey]) delete record[key];
  const event: Json = { type: 'log', level: options.level ?? (typeof level === 'number' ? STANDARD_LABELS[level] : level) };
  if (text !== undefined) event.message = text;
  return { ...event, ...record };
}

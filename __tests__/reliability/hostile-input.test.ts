/**
 * Hostile input, property-based (fast-check): whatever a route pushes, whatever a record holds, whatever a client
 * sends in its headers.
 *
 * 1. Strings from all of Unicode (astral characters, lone surrogates, CR, LF, CRLF, NUL, BOM, U+2028) as data, event
 *    names and ids: `push()` either throws a TypeError (exactly when the contract says: an event or id holding CR, LF
 *    or NUL, a retry that is not a non-negative safe integer) or writes one frame that a spec-following parser
 *    (eventsource-parser) decodes back to exactly the pushed value. The frames go through real bytes: encoded to
 *    UTF-8, cut at random points, decoded with WHATWG's streaming UTF-8 decoder; and, in one property, through a real
 *    HTTP response. What the spec itself does to the text, and so what the comparison accounts for:
 *      - data lines are joined with LF, so CRLF, CR and LF inside the data all come back as LF;
 *      - UTF-8 cannot carry a lone surrogate: encoding writes U+FFFD in its place (WHATWG "UTF-8 encode", and Node's
 *        string writes), so a lone surrogate comes back as U+FFFD; a surrogate pair comes back intact;
 *      - a BOM is stripped only at the very start of a stream ("UTF-8 decode"); every frame starts with a field name,
 *        so a BOM anywhere in data, event or id comes back intact (the HTTP property pushes BOM-first data as the
 *        first event of a stream to show it);
 *      - an empty event name dispatches as a plain `message` event (the parser reports `undefined`).
 *    JSON values (the default serializer) come back as exactly `JSON.stringify(value)`, which escapes lone
 *    surrogates, so those survive as escapes; a value JSON.stringify rejects (BigInt, cycles, a throwing toJSON or
 *    getter, undefined, a function) is a TypeError at push and nothing is written.
 * 2. Random nested log records (cycles at any depth, BigInt, Symbols, functions, invalid Dates, throwing getters,
 *    toJSON that throws / returns a BigInt / returns itself, revoked Proxies, megabyte strings, keys such as
 *    `__proto__`, `type`, `toJSON`): logging never throws and never emits 'error', the two sibling transports each get
 *    every record, and the client gets exactly one `{ "type": "log" }` event per record with its message and plain
 *    fields intact. (log-safety.test.ts covers fixed examples; this is the random, nested part.)
 * 3. Request headers a client controls (`Last-Event-ID` of any bytes, huge or repeated; odd `Accept` values under
 *    `format: 'auto'`), sent over a raw socket so nothing validates them first: the server never crashes, answers every
 *    request (a 4xx when Node's parser refuses the bytes), and what the route echoes reaches the wire only as encoded
 *    values that decode back to exactly what the route saw.
 *
 * The number of fast-check cases run is printed at the end.
 */
import { AsyncResource } from 'node:async_hooks';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import express from 'express';
import fc from 'fast-check';
import winston from 'winston';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { sseStream, SseTransport, type LogRecord, type PushOptions, type SseStream } from '../../lib';
import { SSE } from '../../lib/encode';
import { eventually, listen, openStream, type TestServer } from '../helpers/sse-client';
import { MIB } from './support';

// ---------------------------------------------------------------------------------------------------------------
// What the spec does to text on its way through UTF-8 and the EventSource parser.

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
/** UTF-8 encoding replaces each lone surrogate with U+FFFD. */
const wellFormed = (text: string): string => text.replace(LONE_SURROGATE, '\uFFFD');
/** Data as an EventSource delivers it: well-formed, its lines joined with LF. */
const asDecodedData = (text: string): string => wellFormed(text).replace(/\r\n|\r|\n/g, '\n');
const FORBIDDEN_IN_FIELD = /[\r\n\0]/;

/** Decodes bytes as a browser does: WHATWG streaming UTF-8 decode, fed in the given pieces, into the parser. */
function decodeStream(bytes: Uint8Array, cuts: number[]): { events: EventSourceMessage[]; retries: number[]; comments: string[]; errors: unknown[] } {
  const events: EventSourceMessage[] = [];
  const retries: number[] = [];
  const comments: string[] = [];
  const errors: unknown[] = [];
  const parser = createParser({
    onEvent: (event) => events.push(event),
    onRetry: (retry) => retries.push(retry),
    onComment: (comment) => comments.push(comment),
    onError: (error) => errors.push(error),
  });
  const decoder = new TextDecoder('utf-8');
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  let start = 0;
  for (const point of [...points, bytes.length]) {
    parser.feed(decoder.decode(bytes.subarray(start, point), { stream: true }));
    start = point;
  }
  parser.feed(decoder.decode());
  return { events, retries, comments, errors };
}

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries.

/** Single UTF-16 units and sequences that stress the encoder and the decoder. */
const nastyUnit = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 3, arbitrary: fc.constantFrom('\r', '\n', '\r\n', '\0', '\uFEFF', '\u2028', '\u2029', ':', ' ', 'data: x', 'event: y', 'id: z') },
  { weight: 2, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit)) },
  { weight: 1, arbitrary: fc.constantFrom('\u{1F600}', '\uD83D\uDE00', '\uFFFD', '\u0085', '\u000B', '\u000C') },
);
const nastyString = fc.string({ unit: nastyUnit, maxLength: 24 });
/** Strings without CR, LF or NUL: legal event names and ids. */
const legalField = nastyString.map((text) => text.replace(/[\r\n\0]/g, ''));
const fieldValue = fc.oneof({ weight: 3, arbitrary: nastyString }, { weight: 2, arbitrary: legalField });
const idValue = fc.oneof(
  { weight: 4, arbitrary: fieldValue },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-0, 1e21, Number.MAX_VALUE, NaN, Infinity)) },
);
const retryValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.nat(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(-0, 2 ** 53, 2 ** 53 - 1, NaN, '10', null),
);
const pushOptions: fc.Arbitrary<PushOptions | undefined> = fc.option(
  fc.record({ event: fieldValue, id: idValue, retry: retryValue }, { requiredKeys: [] }).map((options) => options as PushOptions),
  { nil: undefined },
);

/** Whether `push(data, options)` must throw a TypeError by the contract, for string data. */
function mustRefuse(options: PushOptions | undefined): boolean {
  if (options === undefined) return false;
  const { event, id, retry } = options as { event?: unknown; id?: unknown; retry?: unknown };
  if (event !== undefined && (typeof event !== 'string' || FORBIDDEN_IN_FIELD.test(event))) return true;
  if (id !== undefined) {
    if (typeof id === 'number' ? !Number.isFinite(id) : typeof id !== 'string' || FORBIDDEN_IN_FIELD.test(id)) return true;
  }
  if (retry !== undefined && (!Number.isSafeInteger(retry) || (retry as number) < 0)) return true;
  return false;
}

/** The event an EventSource must see for a push that was accepted. */
function expectedEvent(data: string, options: PushOptions | undefined): EventSourceMessage {
  const event = options?.event === undefined ? undefined : wellFormed(options.event) || undefined;
  const id = options?.id === undefined ? undefined : wellFormed(String(options.id));
  return { id, event, data: asDecodedData(data) };
}

/** Counts the cases each property ran; printed at the end. */
const caseCounts: Record<string, number> = {};
const count = (name: string): void => void (caseCounts[name] = (caseCounts[name] ?? 0) + 1);

// ---------------------------------------------------------------------------------------------------------------
// Hostile log records: a description (shrinkable, printable) that is made into fresh objects for each run.

type Shape =
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number }
  | { kind: 'boolean'; value: boolean }
  | { kind: 'null' }
  | { kind: 'undefined' }
  | { kind: 'bigint'; value: bigint }
  | { kind: 'symbol'; description: string }
  | { kind: 'function' }
  | { kind: 'date'; time: number }
  | { kind: 'revoked-proxy' }
  | { kind: 'megabyte'; size: number; char: string }
  | { kind: 'throwing-getter'; message: string }
  | { kind: 'to-json'; mode: 'throws' | 'bigint' | 'self' | 'value'; inner: Shape }
  | { kind: 'cycle'; up: number }
  | { kind: 'object'; entries: Array<[string, Shape]> }
  | { kind: 'array'; items: Shape[] };

const recordKey = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: nastyUnit, maxLength: 8 }) },
  { weight: 1, arbitrary: fc.constantFrom('__proto__', 'type', 'toJSON', 'constructor', 'hasOwnProperty', 'stack', 'valueOf', 'then') },
);

const { shape } = fc.letrec<{ shape: Shape; leaf: Shape }>((tie) => ({
  leaf: fc.oneof(
    fc.record({ kind: fc.constant('string' as const), value: nastyString }),
    fc.record({ kind: fc.constant('number' as const), value: fc.double() }),
    fc.record({ kind: fc.constant('boolean' as const), value: fc.boolean() }),
    fc.constant({ kind: 'null' as const }),
    fc.constant({ kind: 'undefined' as const }),
    fc.record({ kind: fc.constant('bigint' as const), value: fc.bigInt() }),
    fc.record({ kind: fc.constant('symbol' as const), description: nastyString }),
    fc.constant({ kind: 'function' as const }),
    fc.record({ kind: fc.constant('date' as const), time: fc.oneof(fc.integer(), fc.constant(Number.NaN)) }),
    fc.constant({ kind: 'revoked-proxy' as const }),
    fc.record({ kind: fc.constant('throwing-getter' as const), message: nastyString }),
    fc.record({ kind: fc.constant('cycle' as const), up: fc.nat(6) }),
  ),
  shape: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 4, arbitrary: tie('leaf') },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('object' as const), entries: fc.array(fc.tuple(recordKey, tie('shape')), { maxLength: 5 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('array' as const), items: fc.array(tie('shape'), { maxLength: 4 }) }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('to-json' as const), mode: fc.constantFrom('throws' as const, 'bigint' as const, 'self' as const, 'value' as const), inner: tie('shape') }),
    },
  ),
}));

/** A megabyte string is rare, and appears only as a message, so one run does not build hundreds of them. */
const megabyte: fc.Arbitrary<Shape> = fc.record({
  kind: fc.constant('megabyte' as const),
  size: fc.integer({ min: MIB, max: 2 * MIB }),
  char: fc.constantFrom('m', '\u00e9', '\u{1F600}', '\u2028', '"'),
});
const messageShape: fc.Arbitrary<Shape> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('string' as const), value: nastyString }) },
  { weight: 1, arbitrary: megabyte },
  { weight: 2, arbitrary: shape },
);
/** Keys winston itself reads (`level`, `exception`) or the record sets (`message`) never get a hostile value. */
const WINSTON_KEYS = new Set(['level', 'message', 'exception']);
const recordShape = fc.record({
  message: messageShape,
  entries: fc.array(fc.tuple(recordKey, shape), { maxLength: 6 }).map((entries) => entries.filter(([key]) => !WINSTON_KEYS.has(key))),
});
type RecordShape = { message: Shape; entries: Array<[string, Shape]> };

/** How many values of each kind the log-record property built, printed to show what the runs covered. */
const builtKinds: Record<string, number> = {};

/** Defines an own, enumerable property (so `__proto__` stays a key, and getters can be installed). */
function define(target: object, key: string, shape: Shape, ancestors: object[]): void {
  if (shape.kind === 'throwing-getter') {
    builtKinds['throwing-getter'] = (builtKinds['throwing-getter'] ?? 0) + 1;
    Object.defineProperty(target, key, {
      enumerable: true,
      configurable: true,
      get() {
        throw new Error(shape.message);
      },
    });
    return;
  }
  Object.defineProperty(target, key, { value: build(shape, ancestors), enumerable: true, configurable: true, writable: true });
}

/** Makes a fresh value from a shape; `ancestors` are the containers it sits in (the record first), for cycles. */
function build(shape: Shape, ancestors: object[]): unknown {
  builtKinds[shape.kind] = (builtKinds[shape.kind] ?? 0) + 1;
  switch (shape.kind) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'bigint':
      return shape.value;
    case 'null':
      return null;
    case 'undefined':
      return undefined;
    case 'symbol':
      return Symbol(shape.description);
    case 'function':
      return function hostile(): string {
        return 'called';
      };
    case 'date':
      return new Date(shape.time);
    case 'revoked-proxy': {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      return proxy;
    }
    case 'megabyte':
      return shape.char.repeat(Math.ceil(shape.size / shape.char.length));
    case 'throwing-getter': {
      const holder = {};
      define(holder, 'boom', shape, ancestors);
      return holder;
    }
    case 'cycle':
      return ancestors[Math.max(0, ancestors.length - 1 - shape.up)];
    case 'to-json': {
      const holder: Record<string, unknown> = {};
      const inner = build(shape.inner, [...ancestors, holder]);
      Object.defineProperty(holder, 'toJSON', {
        enumerable: false,
        value: () => {
          if (shape.mode === 'throws') throw new Error('toJSON exploded');
          if (shape.mode === 'bigint') return 10n;
          if (shape.mode === 'self') return holder;
          return inner;
        },
      });
      holder.inner = inner;
      return holder;
    }
    case 'object': {
      const object = {};
      for (const [key, value] of shape.entries) define(object, key, value, [...ancestors, object]);
      return object;
    }
    case 'array': {
      const array: unknown[] = [];
      for (const item of shape.items) array.push(build(item, [...ancestors, array]));
      return array;
    }
  }
}

function buildRecord(shape: RecordShape): LogRecord {
  const record: LogRecord = {};
  Object.defineProperty(record, 'level', { value: 'info', enumerable: true, configurable: true, writable: true });
  define(record, 'message', shape.message, [record]);
  for (const [key, value] of shape.entries) define(record, key, value, [record]);
  return record;
}

/** The plain fields of a record that must arrive as they are: own, enumerable, a string, finite number, boolean or null. */
function plainFields(record: LogRecord): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const key of Object.keys(record)) {
    if (key === 'type' || key === 'level' || key === '__proto__') continue;
    const descriptor = Object.getOwnPropertyDescriptor(record, key);
    if (descriptor === undefined || descriptor.get !== undefined) continue;
    const value: unknown = descriptor.value;
    if (typeof value === 'string' || typeof value === 'boolean' || value === null || (typeof value === 'number' && Number.isFinite(value))) {
      Object.defineProperty(fields, key, { value, enumerable: true });
    }
  }
  return fields;
}

// ---------------------------------------------------------------------------------------------------------------
// A raw HTTP/1.1 exchange, so header bytes reach the server exactly as written.

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * Sends `head` over a fresh socket and resolves with the response once it is complete (by its chunked terminator or
 * its Content-Length, or the connection's end), then closes the socket itself. A response that never completes (a
 * server that hangs) makes it reject after `timeoutMs`. With `waitForServerClose` it waits for the server to close the
 * connection (at most `timeoutMs`) even after a complete response. `serverClosed` tells whether the server closed the connection before the client did.
 */
function rawRequest(
  port: number,
  head: Buffer,
  { timeoutMs = 10_000, waitForServerClose = false }: { timeoutMs?: number; waitForServerClose?: boolean } = {},
): Promise<RawResponse & { serverClosed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let serverClosed = false;
    let settled = false;
    const finish = (error?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error !== undefined) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      try {
        resolve({ ...parseRawResponse(Buffer.concat(chunks)), serverClosed });
      } catch (parseError) {
        reject(parseError instanceof Error ? parseError : new Error(String(parseError)));
      }
    };
    const timer = setTimeout(() => {
      const bytes = Buffer.concat(chunks);
      // Waiting for the server to close a complete response: it did not; the caller checks `serverClosed`.
      if (waitForServerClose && responseComplete(bytes)) finish();
      else finish(new Error(`no complete response after ${timeoutMs} ms: ${JSON.stringify(bytes.toString('latin1').slice(0, 300))}`));
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (!waitForServerClose && responseComplete(Buffer.concat(chunks))) finish();
    });
    socket.once('end', () => {
      serverClosed = true;
      finish();
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      // The server may close (or reset) a connection whose request it refused while the request was still going out.
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') {
        serverClosed = true;
        finish();
      } else finish(error);
    });
    socket.write(head);
  });
}

/** Walks a chunked body: the data so far, and whether the last (zero-size) chunk arrived. */
function dechunk(body: Buffer): { data: Buffer; complete: boolean } {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    if (lineEnd === -1) return { data: Buffer.concat(parts), complete: false };
    const size = parseInt(body.subarray(at, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size)) throw new Error(`bad chunk size line ${JSON.stringify(body.subarray(at, lineEnd).toString('latin1'))}`);
    if (size === 0) return { data: Buffer.concat(parts), complete: body.length >= lineEnd + 4 };
    if (body.length < lineEnd + 2 + size + 2) return { data: Buffer.concat(parts), complete: false };
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

function splitHead(bytes: Buffer): { status: number; headers: Record<string, string>; body: Buffer } | undefined {
  const end = bytes.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  const [statusLine, ...lines] = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: bytes.subarray(end + 4) };
}

/** Whether `bytes` hold a whole response: the head, then the whole chunked or Content-Length body. */
function responseComplete(bytes: Buffer): boolean {
  const parts = splitHead(bytes);
  if (parts === undefined) return false;
  if (parts.headers['transfer-encoding'] === 'chunked') return dechunk(parts.body).complete;
  const length = parts.headers['content-length'];
  return length !== undefined && parts.body.length >= Number(length);
}

function parseRawResponse(bytes: Buffer): RawResponse {
  const parts = splitHead(bytes);
  if (parts === undefined) throw new Error(`no complete response head in ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`);
  const body = parts.headers['transfer-encoding'] === 'chunked' ? dechunk(parts.body).data : parts.body;
  return { status: parts.status, headers: parts.headers, body };
}

/** A GET with the given extra header lines, as raw bytes (latin1: one byte per character). */
function requestHead(path: string, headerLines: string[]): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headerLines.map((line) => `${line}\r\n`).join('')}Connection: close\r\n\r\n`, 'latin1');
}

// ---------------------------------------------------------------------------------------------------------------

describe('hostile input', () => {
  let server: TestServer;
  let port: number;
  /** What the /echo route does with its stream; set by each HTTP property run. */
  let scenario: (sse: SseStream) => void = () => undefined;
  const sessions = new Map<string, { stream: SseStream; inRequest: (fn: () => void) => void }>();
  let sessionCount = 0;
  /** What the /resume route saw in the request. */
  const resumeSeen: Array<{ lastEventId: string | undefined; echoed: unknown[] }> = [];
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown): void => void uncaught.push(error);

  // Log records: SseTransport between two recording siblings, on a logger whose format leaves records alone
  // (winston's default json() format would itself throw on some of them, before any transport sees them).
  const loggerErrors: unknown[] = [];
  const siblingA: LogRecord[] = [];
  const siblingB: LogRecord[] = [];
  const recording = (into: LogRecord[]): winston.transport => {
    const stream = new PassThrough({ objectMode: true });
    stream.on('data', (record: LogRecord) => into.push(record));
    const transport = new winston.transports.Stream({ stream });
    transport.on('error', (error: unknown) => loggerErrors.push(error));
    return transport;
  };
  const sseTransport = new SseTransport();
  sseTransport.on('error', (error: unknown) => loggerErrors.push(error));
  const transports = [recording(siblingA), sseTransport, recording(siblingB)];
  const logger = winston.createLogger({ level: 'info', format: winston.format((info) => info)(), transports });
  logger.on('error', (error: unknown) => loggerErrors.push(error));
  const drained = (): boolean =>
    logger.writableLength === 0 && logger.readableLength === 0 && transports.every((transport) => transport.writableLength === 0);

  beforeAll(async () => {
    process.on('uncaughtException', onUncaught);
    const app = express();
    app.get('/echo', sseStream({ heartbeat: 0 }), (_req, res) => {
      scenario(res.sse);
      void res.sse.close();
    });
    // Records can be megabytes: maxBuffer is raised so a burst of them is not (correctly) closed as 'overflow'.
    app.get('/session/:id', sseStream({ heartbeat: 0, maxBuffer: 64 * MIB }), (req, res) => {
      sessions.set(String(req.params.id), { stream: res.sse, inRequest: AsyncResource.bind((fn: () => void) => fn()) });
    });
    // Echoes the request's Last-Event-ID every way a resuming route might: as JSON, as data, as the id and event name,
    // and in a comment. Whatever it holds may reach the wire only as the value it is.
    app.get('/resume', sseStream({ heartbeat: 0, format: 'auto', retry: 1000 }), (_req, res) => {
      const lastEventId = res.sse.lastEventId;
      const echoed: unknown[] = [];
      resumeSeen.push({ lastEventId, echoed });
      res.sse.push({ resumedFrom: lastEventId ?? null });
      echoed.push({ resumedFrom: lastEventId ?? null });
      res.sse.push(lastEventId ?? '');
      echoed.push(lastEventId ?? '');
      try {
        res.sse.push('as-id', { id: lastEventId, event: lastEventId });
        echoed.push({ id: lastEventId, event: lastEventId });
      } catch (error) {
        if (!(error instanceof TypeError)) throw error;
        echoed.push('refused');
      }
      res.sse.comment(lastEventId ?? '');
      void res.sse.close();
    });
    app.get('/ok', (_req, res) => {
      res.send('ok');
    });
    server = await listen(app);
    port = Number(new URL(server.url).port);
  });
  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    await server.close();
    console.log(
      `fast-check cases run: ${JSON.stringify(caseCounts)}; total ${Object.values(caseCounts).reduce((sum, n) => sum + n, 0)}`,
    );
  });
  afterEach(() => {
    expect(uncaught).toEqual([]);
  });

  async function stillServing(): Promise<void> {
    const response = await rawRequest(port, requestHead('/ok', []));
    expect(response.status).toBe(200);
    expect(response.body.toString()).toBe('ok');
  }

  describe('pushed strings, event names, ids and retry values', () => {
    it('encoder: a TypeError exactly when the contract says, otherwise one frame that decodes back to the value', () => {
      fc.assert(
        fc.property(nastyString, pushOptions, fc.array(fc.nat(), { maxLength: 6 }), (data, options, cuts) => {
          count('encoder: strings, names, ids, retry (bytes cut at random)');
          let frame: string;
          try {
            frame = SSE.event(data, options, JSON.stringify);
          } catch (error) {
            expect(error).toBeInstanceOf(TypeError);
            expect(mustRefuse(options)).toBe(true);
            return;
          }
          expect(mustRefuse(options)).toBe(false);
          // One frame: only LF line ends, one blank line, at the end.
          expect(frame.includes('\r')).toBe(false);
          expect(frame.indexOf('\n\n')).toBe(frame.length - 2);
          const decoded = decodeStream(new TextEncoder().encode(frame), cuts);
          expect(decoded.errors).toEqual([]);
          expect(decoded.comments).toEqual([]);
          expect(decoded.events).toEqual([expectedEvent(data, options)]);
          const retry = (options as { retry?: number } | undefined)?.retry;
          // -0 is a non-negative integer too; it is written, and read back, as 0.
          expect(decoded.retries).toEqual(retry === undefined ? [] : [retry === 0 ? 0 : retry]);
        }),
        { numRuns: 2000, examples: [['\uFEFFbom first', undefined, []], ['\uD800', { id: '\uDC00', event: '\uFEFF' }, [1, 2, 3]]] },
      );
    });

    it('encoder: any value as data with the default serializer is exactly JSON.stringify(value), or a TypeError', () => {
      const value = fc.oneof(
        fc.anything({ withBigInt: true, withDate: true, withMap: true, withSet: true, withNullPrototype: true, withSparseArray: true, withTypedArray: true }),
        fc.jsonValue(),
        fc.constantFrom<unknown>(undefined, () => 1, Symbol('s'), 10n, { toJSON: () => undefined }, { toJSON: () => 10n }, Object.assign([], { length: 2 })),
      );
      fc.assert(
        fc.property(value, (data) => {
          count('encoder: any value as JSON data');
          let expected: string | undefined;
          let stringifyFailed = false;
          if (typeof data !== 'string') {
            try {
              expected = JSON.stringify(data) as string | undefined;
            } catch {
              stringifyFailed = true;
            }
          }
          let frame: string;
          try {
            frame = SSE.event(data, undefined, JSON.stringify);
          } catch (error) {
            expect(error).toBeInstanceOf(TypeError);
            expect(stringifyFailed || (typeof data !== 'string' && typeof expected !== 'string')).toBe(true);
            return;
          }
          const decoded = decodeStream(Buffer.from(frame, 'utf8'), []);
          expect(decoded.events).toHaveLength(1);
          expect(decoded.events[0].data).toBe(typeof data === 'string' ? asDecodedData(data) : expected);
        }),
        { numRuns: 1000 },
      );
    });

    it('over HTTP: each pushed batch arrives as exactly the accepted events, decoded back to their values', async () => {
      const batch = fc.array(fc.tuple(nastyString, pushOptions), { minLength: 1, maxLength: 6 });
      await fc.assert(
        fc.asyncProperty(batch, async (pushes) => {
          count('HTTP: batches of pushes on a fresh stream');
          const accepted: EventSourceMessage[] = [];
          const refusedWrongly: string[] = [];
          scenario = (sse) => {
            for (const [data, options] of pushes) {
              try {
                sse.push(data, options);
                if (mustRefuse(options)) refusedWrongly.push(`accepted ${JSON.stringify(options)}`);
                accepted.push(expectedEvent(data, options));
              } catch (error) {
                if (!(error instanceof TypeError) || !mustRefuse(options)) refusedWrongly.push(`threw ${String(error)} for ${JSON.stringify(options)}`);
              }
            }
          };
          const client = await openStream(`${server.url}/echo`);
          await client.ended;
          expect(refusedWrongly).toEqual([]);
          expect(client.events).toEqual(accepted);
          expect(client.response.complete).toBe(true);
        }),
        { numRuns: 150, examples: [[[['\uFEFF first event of the stream starts with a BOM', undefined]]]] },
      );
      await stillServing();
    });
  });

  describe('log records', () => {
    async function openSession(): Promise<{ stream: SseStream; inRequest: (fn: () => void) => void; client: Awaited<ReturnType<typeof openStream>> }> {
      sessionCount += 1;
      const id = String(sessionCount);
      const client = await openStream(`${server.url}/session/${id}`);
      await eventually(() => sessions.has(id), 5000, 'the route to start');
      const session = sessions.get(id);
      if (session === undefined) throw new Error('no session');
      sessions.delete(id);
      return { ...session, client };
    }

    it('random nested records: logging never throws, siblings get every record, the client one event per record', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(recordShape, { minLength: 1, maxLength: 4 }), async (shapes) => {
          count('log records: random nested hostile records');
          const session = await openSession();
          const records = shapes.map(buildRecord);
          const beforeA = siblingA.length;
          const beforeB = siblingB.length;
          const thrown: unknown[] = [];
          session.inRequest(() => {
            for (const record of records) {
              try {
                logger.write(record);
              } catch (error) {
                thrown.push(error);
              }
            }
          });
          await eventually(drained, 10_000, 'every transport to drain');
          await session.stream.close();
          await session.client.ended;
          expect(thrown).toEqual([]);
          expect(loggerErrors).toEqual([]);
          // Both siblings were handed every record, the very objects, in order.
          expect(siblingA.slice(beforeA)).toHaveLength(records.length);
          expect(siblingB.slice(beforeB)).toHaveLength(records.length);
          records.forEach((record, i) => {
            expect(siblingA[beforeA + i]).toBe(record);
            expect(siblingB[beforeB + i]).toBe(record);
          });
          // One event per record, each a JSON object that keeps the message and the plain fields.
          expect(session.stream.closeReason).toBe('close');
          expect(session.client.events).toHaveLength(records.length);
          session.client.events.forEach((event, i) => {
            expect(event.event).toBeUndefined();
            const parsed = JSON.parse(event.data) as Record<string, unknown>;
            expect(parsed.type).toBe('log');
            expect(parsed.level).toBe('info');
            const message = Object.getOwnPropertyDescriptor(records[i], 'message')?.value as unknown;
            if (typeof message === 'string') expect(parsed.message).toBe(message);
            for (const [key, value] of Object.entries(plainFields(records[i]))) {
              expect([key, JSON.stringify(Object.getOwnPropertyDescriptor(parsed, key)?.value)]).toEqual([key, JSON.stringify(value)]);
            }
          });
        }),
        { numRuns: 120 },
      );
      console.log(`log records: values built per kind across the runs ${JSON.stringify(builtKinds)}`);
      for (const kind of ['cycle', 'bigint', 'symbol', 'throwing-getter', 'to-json', 'megabyte', 'revoked-proxy']) expect(builtKinds[kind]).toBeGreaterThan(0);
    }, 60_000);
  });

  describe('request headers', () => {
    /** The response to /resume, decoded as its content type says, checked against what the route saw and echoed. */
    function checkResume(response: RawResponse, seen: { lastEventId: string | undefined; echoed: unknown[] }): void {
      expect(response.status).toBe(200);
      const text = new TextDecoder('utf-8').decode(response.body);
      const [asJson, asData, asId] = seen.echoed;
      if (response.headers['content-type'] === 'application/x-ndjson; charset=utf-8') {
        // One JSON value per line: nothing else.
        const lines = text.split('\n');
        expect(lines.pop()).toBe('');
        expect(lines.map((line) => JSON.parse(line) as unknown)).toEqual([asJson, asData, 'as-id']);
        return;
      }
      expect(response.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      const decoded = decodeStream(new Uint8Array(response.body), []);
      expect(decoded.errors).toEqual([]);
      expect(decoded.retries).toEqual([1000]);
      const expected: EventSourceMessage[] = [
        { id: undefined, event: undefined, data: JSON.stringify(asJson) },
        { id: undefined, event: undefined, data: asDecodedData(String(asData)) },
      ];
      if (asId !== 'refused') expected.push(expectedEvent('as-id', { id: seen.lastEventId, event: seen.lastEventId }));
      expect(decoded.events).toEqual(expected);
      // The comment is one comment line per line of the value; it never becomes a field or an event.
      expect(decoded.comments).toEqual(asDecodedData(seen.lastEventId ?? '').split('\n').map(wellFormed));
    }

    it('Last-Event-ID of arbitrary bytes and odd Accept values: never a crash, only encoded values on the wire', async () => {
      const headerByte = fc.oneof(
        { weight: 6, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
        { weight: 3, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
        // Control bytes Node's parser refuses in a header value (CR and LF would end the header line instead).
        { weight: 1, arbitrary: fc.constantFrom(0x00, 0x01, 0x09, 0x0b, 0x0c, 0x1b, 0x7f) },
      );
      const headerText = fc.array(headerByte, { maxLength: 64 }).map((bytes) => Buffer.from(bytes).toString('latin1'));
      const accept = fc.option(
        fc.oneof(
          fc.constantFrom(
            'application/x-ndjson',
            'text/event-stream',
            'application/x-ndjson;q=0.9, text/event-stream;q=1',
            'text/event-stream;q=0, application/x-ndjson',
            '*/*;q=NaN, application/x-ndjson;q=1e999',
            'application/x-ndjson;q=-1',
            ';;;,,,',
            '*/*',
            '',
          ),
          fc.array(fc.constantFrom('application/x-ndjson', 'text/event-stream', '*/*', ';q=', '0', '1', '.', ',', ' ', 'NaN', '=', ';'), { maxLength: 12 }).map((parts) => parts.join('')),
          headerText,
        ),
        { nil: undefined },
      );
      let served = 0;
      let refused = 0;
      const formats: Record<string, number> = {};
      await fc.assert(
        fc.asyncProperty(headerText, accept, async (lastEventId, acceptValue) => {
          count('headers: Last-Event-ID bytes and Accept values over a raw socket');
          const lines = [`Last-Event-ID: ${lastEventId}`];
          if (acceptValue !== undefined) lines.push(`Accept: ${acceptValue}`);
          const before = resumeSeen.length;
          const response = await rawRequest(port, requestHead('/resume', lines));
          if (resumeSeen.length === before) {
            // Node's parser refused the request (a control byte in a header): a 400, and the route never ran.
            expect(response.status).toBe(400);
            refused += 1;
            return;
          }
          served += 1;
          formats[response.headers['content-type']] = (formats[response.headers['content-type']] ?? 0) + 1;
          const seen = resumeSeen[resumeSeen.length - 1];
          // What the route saw is the header as sent (one byte per character), minus the whitespace HTTP trims.
          const sent = lastEventId.replace(/^[ \t]+|[ \t]+$/g, '');
          expect(seen.lastEventId).toBe(sent === '' ? undefined : sent);
          checkResume(response, seen);
        }),
        { numRuns: 300 },
      );
      console.log(`headers: ${served} requests served (${JSON.stringify(formats)}), ${refused} refused by Node's HTTP parser with a 400`);
      expect(served).toBeGreaterThan(0);
      expect(refused).toBeGreaterThan(0);
      // 'auto' negotiated both formats across the Accept values: both encoders were exercised.
      expect(Object.keys(formats).sort()).toEqual(['application/x-ndjson; charset=utf-8', 'text/event-stream; charset=utf-8']);
      await stillServing();
    }, 60_000);

    it('a huge, repeated or oversized Last-Event-ID: served intact up to the header limit, a 431 beyond, the server unharmed', async () => {
      // Just under Node's 16 KiB limit for the whole request head: served, and echoed intact.
      const big = 'k'.repeat(15 * 1024);
      const before = resumeSeen.length;
      const served = await rawRequest(port, requestHead('/resume', [`Last-Event-ID: ${big}`, 'Accept: text/event-stream']));
      expect(resumeSeen.length).toBe(before + 1);
      expect(resumeSeen[before].lastEventId).toBe(big);
      checkResume(served, resumeSeen[before]);

      // Repeated: Node joins the values, and the joined value is echoed like any other.
      const repeated = await rawRequest(port, requestHead('/resume', ['Last-Event-ID: 1', 'Last-Event-ID: 2\u00ff', 'Accept: text/event-stream']));
      expect(resumeSeen[before + 1].lastEventId).toBe('1, 2\u00ff');
      checkResume(repeated, resumeSeen[before + 1]);

      // Beyond the limit: refused before any route runs.
      for (const size of [64 * 1024, 1024 * 1024]) {
        const response = await rawRequest(port, requestHead('/resume', [`Last-Event-ID: ${'h'.repeat(size)}`]));
        expect(response.status).toBe(431);
      }
      const manyHeaders = Array.from({ length: 3000 }, (_, i) => `Last-Event-ID: ${i}`);
      expect((await rawRequest(port, requestHead('/resume', manyHeaders))).status).toBe(431);

      // A long Accept header of many media ranges, for 'auto' to negotiate: served, as one of the two formats.
      const longAccept = Array.from({ length: 600 }, (_, i) => (i % 2 === 0 ? `text/event-stream;q=0.${i % 10}` : `a/b${i};x=${i}`)).join(', ');
      const negotiated = await rawRequest(port, requestHead('/resume', ['Last-Event-ID: 7', `Accept: ${longAccept}`]));
      expect(resumeSeen.length).toBe(before + 3);
      checkResume(negotiated, resumeSeen[before + 2]);
      await stillServing();
    });

    it("honours a client's `Connection: close`: the connection closes once the stream has ended (RFC 9112, 9.6)", async () => {
      // Long enough that only an explicit close, not Node's idle keep-alive timer (5 s by default), ends the connection.
      const keepAliveTimeout = server.server.keepAliveTimeout;
      server.server.keepAliveTimeout = 60_000;
      try {
        const response = await rawRequest(port, requestHead('/resume', ['Accept: text/event-stream']), { timeoutMs: 3000, waitForServerClose: true });
        expect(response.status).toBe(200);
        expect(response.body.toString()).toContain('as-id');
        expect({ connection: response.headers.connection, serverClosed: response.serverClosed }).toEqual({ connection: 'close', serverClosed: true });
      } finally {
        server.server.keepAliveTimeout = keepAliveTimeout;
      }
    });
  });
});

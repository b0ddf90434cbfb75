/**
 * `readEvents()`'s input and options, checked and resolved once, at the call, into the `Plan` every connection
 * attempt follows.
 */
import { checkOptions, describe, nonNegativeInteger, timerDelay } from '../options.js';
import { errorMessage } from './errors.js';
import { isResponseLike } from './response.js';
import type { ReadEventsInit, ReconnectOptions } from './types.js';

const ACCEPT = 'text/event-stream, application/x-ndjson;q=0.9';
const DEFAULT_RECONNECT: Required<ReconnectOptions> = { retries: 5, delay: 1000, maxDelay: 30_000 };
const RECONNECT_OPTIONS: ReadonlySet<string> = new Set(Object.keys(DEFAULT_RECONNECT));
const FORBIDDEN_IN_HEADER = /[\r\n\0]/;

/** Everything `readEvents()` checked and resolved before the first request. */
export interface Plan<T> {
  input: string | URL | Response;
  request: RequestInit;
  headers: Headers;
  signal: AbortSignal | undefined;
  done: string | undefined;
  parse: ((data: string) => T) | undefined;
  reconnect: Required<ReconnectOptions> | undefined;
  lastEventId: string | undefined;
  fetch: (input: string | URL, init?: RequestInit) => Promise<Response>;
}


export function plan<T>(input: string | URL | Response, init: ReadEventsInit<T>): Plan<T> {
  const isResponse = isResponseLike(input);
  if (!isResponse && typeof input !== 'string' && !(input instanceof URL)) {
    throw new TypeError(`input: expected a URL (a string or URL) or a Response, got ${describe(input)}`);
  }
  if (isResponse && input.bodyUsed) throw new TypeError('input: the body of this Response was already read');
  if (init === null || typeof init !== 'object') throw new TypeError(`init: expected an object, got ${describe(init)}`);
  const { done, parse, reconnect, lastEventId, fetch: fetchOption, headers, signal, ...request } = init;
  if (done !== undefined && typeof done !== 'string') throw new TypeError(`done: expected a string, got ${describe(done)}`);
  if (parse !== undefined && typeof parse !== 'function') throw new TypeError(`parse: expected a function, got ${describe(parse)}`);
  if (fetchOption !== undefined && typeof fetchOption !== 'function') {
    throw new TypeError(`fetch: expected a function, got ${describe(fetchOption)}`);
  }
  if (lastEventId !== undefined && (typeof lastEventId !== 'string' || FORBIDDEN_IN_HEADER.test(lastEventId))) {
    throw new TypeError(`lastEventId: expected a string without CR, LF or NUL, got ${describe(lastEventId)}`);
  }
  if (signal != null && !(typeof signal === 'object' && typeof signal.addEventListener === 'function')) {
    throw new TypeError(`signal: expected an AbortSignal, got ${describe(signal)}`);
  }
  const retrying = reconnectOptions(reconnect);
  if (retrying !== undefined && isResponse) {
    throw new TypeError('reconnect: needs a URL to reconnect to; a Response cannot be fetched again');
  }
  if (retrying !== undefined && isReadableStream(request.body)) {
    throw new TypeError('reconnect: a ReadableStream body cannot be sent again; pass a string, Blob, FormData or buffer');
  }
  let headerList: Headers;
  try {
    headerList = new Headers(headers);
  } catch (error) {
    throw new TypeError(`headers: ${errorMessage(error)}`, { cause: error });
  }
  if (!headerList.has('accept')) headerList.set('accept', ACCEPT);
  return {
    input,
    request,
    headers: headerList,
    signal: signal ?? undefined,
    done,
    parse,
    reconnect: retrying,
    lastEventId: lastEventId === '' ? undefined : lastEventId,
    // Called through globalThis at request time: a detached `fetch` throws "Illegal invocation" in browsers, and a
    // test may replace the global after this module loaded.
    fetch: fetchOption ?? ((url, options) => globalThis.fetch(url, options)),
  };
}

function reconnectOptions(value: unknown): Required<ReconnectOptions> | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return DEFAULT_RECONNECT;
  if (value === null || typeof value !== 'object') {
    throw new TypeError(`reconnect: expected a boolean or { retries, delay, maxDelay }, got ${describe(value)}`);
  }
  checkOptions(value, 'reconnect', RECONNECT_OPTIONS, 'reconnect.', 'reconnect');
  const options = value as ReconnectOptions;
  return {
    retries: nonNegativeInteger(options.retries ?? DEFAULT_RECONNECT.retries, 'reconnect.retries'),
    delay: nonNegativeInteger(options.delay ?? DEFAULT_RECONNECT.delay, 'reconnect.delay'),
    maxDelay: timerDelay(options.maxDelay ?? DEFAULT_RECONNECT.maxDelay, 'reconnect.maxDelay'),
  };
}

function isReadableStream(body: unknown): boolean {
  if (body === null || typeof body !== 'object') return false;
  return typeof (body as { getReader?: unknown }).getReader === 'function' || Symbol.asyncIterator in body;
}

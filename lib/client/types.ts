/**
 * The public types of `readEvents()`: what it yields and what it accepts.
 */
/** One complete event read from the stream. */
export interface ServerEvent<T = unknown> {
  /**
   * The event's data as text: in SSE, its `data:` lines joined with `\n`; in NDJSON, the line itself (without the
   * line break).
   */
  readonly data: string;
  /** The SSE `event:` name, or `undefined` when the server sent none (`EventSource` calls that a `message`). Always `undefined` in NDJSON. */
  readonly event: string | undefined;
  /** The SSE `id:` of this event, or `undefined` when it had none. Always `undefined` in NDJSON. */
  readonly id: string | undefined;
  /**
   * The reconnection delay in milliseconds the server last set with `retry:` on this stream (it carries over
   * reconnections), or `undefined` when it set none. Always `undefined` in NDJSON.
   */
  readonly retry: number | undefined;
  /**
   * The data parsed: with the `parse` option, `parse(data)`; otherwise `JSON.parse(data)`. Parsed on the first call and
   * cached. In NDJSON every line is parsed as it arrives (so a malformed line fails the loop, with its line number),
   * and this returns that value.
   *
   * @throws SyntaxError when the data of an SSE event is not JSON (and no `parse` option was given).
   */
  json(): T;
}

/** How `readEvents()` reconnects after a dropped connection. */
export interface ReconnectOptions {
  /**
   * Attempts in a row that may fail (a network error, a 5xx answer, a connection that dropped before delivering an
   * event) before `readEvents()` gives up with an `SseConnectionError`. A connection that delivers an event resets
   * the count. A non-negative integer. Default: 5.
   */
  retries?: number;
  /**
   * Milliseconds to wait before the first attempt after a failure, doubled for each further failure in a row. A
   * `retry:` the server sent replaces it. A non-negative integer. Default: 1000.
   */
  delay?: number;
  /** The longest wait between attempts, in milliseconds; a non-negative integer. Default: 30000. */
  maxDelay?: number;
}

/** What `readEvents()` accepts besides `fetch`'s own `RequestInit` (method, headers, body, signal, credentials, ...). */
export interface ReadEventsInit<T = unknown> extends RequestInit {
  /**
   * Data that marks the end of the stream, e.g. `'[DONE]'` (`sseStream({ done })` sends it as the last event; in
   * NDJSON as a JSON string line, `"[DONE]"`). The terminator is not yielded: the loop ends and the connection is
   * closed. When given, a stream that ends without it counts as dropped: it is reconnected when `reconnect` is on,
   * and throws an `SseConnectionError` otherwise. Default: none (the stream ends when the response ends).
   */
  done?: string;
  /** Turns an event's data into the value `json()` returns. Default: `JSON.parse`. */
  parse?: (data: string) => T;
  /**
   * Reconnect after a dropped connection, resuming with `Last-Event-ID` set to the last event id received (see
   * {@link ReconnectOptions}). `true` uses the defaults. SSE only: an NDJSON stream carries no ids to resume from,
   * so a drop after it began throws. Needs a URL as `input` and a body that can be sent again (not a
   * `ReadableStream`). Default: `false`.
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * A `Last-Event-ID` to send with the first request, to resume a stream read earlier. Must not contain CR, LF or
   * NUL. Default: none.
   */
  lastEventId?: string;
  /** The `fetch` to use (a wrapper that adds auth, a mock in tests). Default: the global `fetch`. */
  fetch?: (input: string | URL, init?: RequestInit) => Promise<Response>;
}

/**
 * `express-sse-context/client`: the consumer side. Reads a `text/event-stream` or `application/x-ndjson` response as
 * an async iterator of complete events, over `fetch` (any method, headers and body, unlike `EventSource`), with
 * cancellation and optional reconnection with `Last-Event-ID`.
 *
 * This module runs in browsers as well as in Node 20+: it uses only web platform globals (`fetch`, `Response`,
 * `ReadableStream`, `TextDecoder`, `AbortController`, `setTimeout`) and `eventsource-parser`, and nothing from `node:*`.
 *
 * @module
 */
import { errorMessage, NdjsonParseError, SseConnectionError, SseResponseError } from './errors.js';
import { ndjsonDecoder, Sink, sseDecoder, type Progress } from './decoders.js';
import { plan, type Plan } from './plan.js';
import { accept, isResponseLike, type Format } from './response.js';
import type { ReadEventsInit, ServerEvent } from './types.js';

export type { ServerEvent, ReconnectOptions, ReadEventsInit } from './types.js';
export { SseResponseError, NdjsonParseError, SseConnectionError } from './errors.js';

/** How one connection ended, when it did not throw. */
type Ending = 'done' | 'ended';

/**
 * Reads a stream of events: `for await (const event of readEvents(url, init)) { ... }`.
 *
 * `input` is a URL, fetched with `init` (any method, headers and body; `Accept` defaults to SSE, then NDJSON), or a
 * `Response` already fetched. The response must be 2xx with `Content-Type: text/event-stream` (parsed with
 * `eventsource-parser`, as the EventSource spec reads it) or `application/x-ndjson` (one JSON value per line); a
 * `204 No Content` is an empty stream. Text is decoded as UTF-8 across chunk boundaries.
 *
 * Leaving the loop (`break`, `return`, an exception) or aborting `init.signal` closes the connection, so the server's
 * `res.sse.signal` aborts. Aborting makes the loop throw the signal's reason.
 *
 * The request is sent when the loop starts, not when `readEvents()` is called; the options are checked at the call.
 *
 * @throws TypeError naming the option, at the call, for an invalid `input` or option.
 * @throws SseResponseError (from the loop) for a non-2xx status or a wrong content type.
 * @throws NdjsonParseError (from the loop) for an NDJSON line that is not JSON.
 * @throws SseConnectionError (from the loop) when the connection dropped and was not, or could no longer be, reconnected.
 */
export function readEvents<T = unknown>(
  input: string | URL | Response,
  init: ReadEventsInit<T> = {},
): AsyncGenerator<ServerEvent<T>, void, undefined> {
  return run(plan(input, init));
}

async function* run<T>(plan: Plan<T>): AsyncGenerator<ServerEvent<T>, void, undefined> {
  const progress: Progress = { lastEventId: plan.lastEventId, retry: undefined, received: 0 };
  let failures = 0;
  for (;;) {
    plan.signal?.throwIfAborted();
    /** Why this connection failed, when a new one might fix it. */
    let dropped: unknown;
    let format: Format | undefined;
    progress.received = 0;
    const connection = new AbortController();
    const unlink = link(plan.signal, connection);
    try {
      const response = await open(plan, progress, connection.signal);
      // No Content: the server has nothing (more) to send; EventSource also stops here.
      if (response.status === 204) return;
      format = await accept(response);
      const ending = yield* read(response, format, plan, progress, connection.signal);
      if (ending === 'done' || plan.done === undefined) return;
      dropped = new Error(`the stream ended before its done terminator ${JSON.stringify(plan.done)}`);
    } catch (error) {
      if (plan.signal?.aborted) throw plan.signal.reason;
      if (error instanceof NdjsonParseError) throw error;
      if (error instanceof SseResponseError && !(plan.reconnect !== undefined && error.status >= 500)) throw error;
      dropped = error;
    } finally {
      // Closes the connection however the loop left it: `break` in the consumer, an error, or the end of the stream.
      connection.abort();
      unlink();
    }
    failures = progress.received > 0 ? 1 : failures + 1;
    if (plan.reconnect === undefined) {
      throw new SseConnectionError(`the connection failed (${errorMessage(dropped)})`, failures, dropped);
    }
    if (format === 'ndjson') {
      throw new SseConnectionError(
        `the connection failed (${errorMessage(dropped)}); an NDJSON stream has no event ids to resume from, so it is not reconnected`,
        failures,
        dropped,
      );
    }
    if (failures > plan.reconnect.retries) {
      throw new SseConnectionError(
        `gave up after ${failures} failed connection attempts in a row (last: ${errorMessage(dropped)})`,
        failures,
        dropped,
      );
    }
    const base = progress.retry ?? plan.reconnect.delay;
    await sleep(Math.min(plan.reconnect.maxDelay, base * 2 ** (failures - 1)), plan.signal);
  }
}

/** Sends the request (or takes the given Response). */
function open<T>(plan: Plan<T>, progress: Progress, signal: AbortSignal): Promise<Response> {
  if (isResponseLike(plan.input)) return Promise.resolve(plan.input);
  const headers = new Headers(plan.headers);
  if (progress.lastEventId !== undefined && progress.lastEventId !== '') headers.set('last-event-id', progress.lastEventId);
  return plan.fetch(plan.input, { ...plan.request, headers, signal });
}

/** Reads one response to its end (or its `done` terminator), yielding each complete event. */
async function* read<T>(
  response: Response,
  format: Format,
  plan: Plan<T>,
  progress: Progress,
  signal: AbortSignal,
): AsyncGenerator<ServerEvent<T>, Ending, undefined> {
  const body = response.body;
  if (body === null) return 'ended';
  const reader = body.getReader();
  // A given Response is not tied to the connection's controller; cancelling its reader is how it stops.
  const cancel = (): void => void reader.cancel(signal.reason).catch(ignore);
  signal.addEventListener('abort', cancel, { once: true });
  const decoder = new TextDecoder();
  const sink = new Sink<T>();
  const decode = format === 'sse' ? sseDecoder(plan, progress, sink) : ndjsonDecoder(plan, sink);
  try {
    for (;;) {
      const chunk = await reader.read();
      signal.throwIfAborted();
      // `stream: true` keeps a multi-byte character split across chunks until its last byte arrives.
      const text = chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true });
      if (text !== '') decode.feed(text);
      if (chunk.done) decode.end();
      for (const event of sink.take()) {
        progress.received += 1;
        yield event;
      }
      if (sink.error !== undefined) throw sink.error;
      if (sink.finished) return 'done';
      if (chunk.done) return 'ended';
    }
  } finally {
    signal.removeEventListener('abort', cancel);
    reader.cancel().catch(ignore);
  }
}

/** Aborts `controller` when `signal` aborts; returns the function that undoes the link. */
function link(signal: AbortSignal | undefined, controller: AbortController): () => void {
  if (signal === undefined) return ignore;
  if (signal.aborted) {
    controller.abort(signal.reason);
    return ignore;
  }
  const abort = (): void => controller.abort(signal.reason);
  signal.addEventListener('abort', abort, { once: true });
  return () => signal.removeEventListener('abort', abort);
}

/** Waits `milliseconds`, or rejects with the signal's reason as soon as it aborts. */
function sleep(milliseconds: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, milliseconds);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function ignore(): void {}

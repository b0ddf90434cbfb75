/**
 * `sseErrorHandler()`: turns an error thrown after the stream's headers went out into an event the page can show.
 */
import type { ErrorRequestHandler } from 'express';
import { errorEventData, shapesOf } from './event-shapes.js';
import type { SseStream } from './sse-stream.js';

const GENERIC_MESSAGE = 'Internal Server Error';

/**
 * Express error middleware for `sseStream()` routes. Once the headers are sent an error can no longer become an HTTP
 * error (Express would drop the connection, and the browser would reconnect and run the work again), so when the
 * failing request has an open stream this sends a plain message event with data
 * `{ "type": "error", "message": <safe message> }` and closes the stream. Every other request goes on to `next(err)`,
 * except the abort of a stream whose client already left: the work stopping because of `res.sse.signal` is expected.
 *
 * The route's `sseStream({ errorEvent })` decides the event's data, given `{ message, status }` and the error.
 *
 * The message is the error's own only when it is marked safe to show (`expose: true`, as http-errors sets for
 * status < 500); otherwise it is `"Internal Server Error"`. Never a stack trace. Mount it after your routes, and
 * after any error middleware of yours that logs.
 */
export function sseErrorHandler(): ErrorRequestHandler {
  return function sseErrorMiddleware(error: unknown, _req, res, next) {
    const stream = (res as { sse?: SseStream }).sse;
    if (stream === undefined) {
      next(error);
      return;
    }
    if (stream.closed) {
      // The work's own abort after the client left (`sleep(ms, v, { signal })`, `fetch(url, { signal })`) is not a
      // failure worth a stack trace in the server's log; anything else still goes on to `next`.
      if (!isAbortOf(stream, error)) next(error);
      return;
    }
    const status = statusOf(error);
    const info = { message: safeMessage(error, status), status };
    try {
      stream.push(errorEventData(shapesOf(stream), info, error));
    } catch {
      try {
        stream.push({ type: 'error', message: info.message });
      } catch {
        // Only a custom `serialize` that refuses a plain object gets here; the stream still ends cleanly below.
      }
    }
    // Ended, not dropped: a dropped connection makes EventSource reconnect and run the work again.
    void stream.close();
  };
}

function isAbortOf(stream: SseStream, error: unknown): boolean {
  const { reason } = stream.signal;
  return error === reason || (typeof error === 'object' && error !== null && (error as { cause?: unknown }).cause === reason);
}

/** The HTTP status an error stands for: its own `status` or `statusCode` when it is one of 400–599, else 500. */
function statusOf(error: unknown): number {
  if (error === null || typeof error !== 'object') return 500;
  try {
    const { status, statusCode } = error as Partial<Record<'status' | 'statusCode', unknown>>;
    const code = status ?? statusCode;
    return typeof code === 'number' && Number.isInteger(code) && code >= 400 && code <= 599 ? code : 500;
  } catch {
    return 500;
  }
}

function safeMessage(error: unknown, status: number): string {
  if (status >= 500 || error === null || typeof error !== 'object') return GENERIC_MESSAGE;
  try {
    const { expose, message } = error as Partial<Record<'expose' | 'message', unknown>>;
    return expose === true && typeof message === 'string' ? message : GENERIC_MESSAGE;
  } catch {
    return GENERIC_MESSAGE;
  }
}

/**
 * The errors `readEvents()` throws from its loop, exported for `instanceof` checks.
 */
/** A response `readEvents()` will not read: a status other than 2xx, or a content type that is neither SSE nor NDJSON. */
export class SseResponseError extends Error {
  /** The response's HTTP status, e.g. 401. */
  readonly status: number;
  /** The response's `Content-Type` header, or `null` when it had none. */
  readonly contentType: string | null;
  /** The first bytes of the response body (up to 512), decoded as UTF-8: usually the server's error message. */
  readonly body: string;
  /** The URL of the response, or `''` when unknown. */
  readonly url: string;

  /** Made by `readEvents()`; exported for `instanceof` checks. */
  constructor(message: string, details: { status: number; contentType: string | null; body: string; url: string }) {
    super(message);
    this.name = 'SseResponseError';
    this.status = details.status;
    this.contentType = details.contentType;
    this.body = details.body;
    this.url = details.url;
  }
}

/** A line of an NDJSON stream that is not JSON (or that the `parse` option refused). */
export class NdjsonParseError extends SyntaxError {
  /** The 1-based number of the line in the response body, counting empty lines. */
  readonly lineNumber: number;
  /** The line's text (at most its first 200 characters). */
  readonly line: string;

  /** Made by `readEvents()`; exported for `instanceof` checks. */
  constructor(lineNumber: number, line: string, cause: unknown) {
    const text = line.length > 200 ? `${line.slice(0, 200)}…` : line;
    // JSON.parse's own words are in `cause`; V8 repeats the whole line in them.
    super(`NDJSON line ${lineNumber} could not be parsed: ${JSON.stringify(text)}`, { cause });
    this.name = 'NdjsonParseError';
    this.lineNumber = lineNumber;
    this.line = text;
  }
}

/**
 * The connection dropped (a network error, or the stream ended before its `done` terminator) and was not, or could
 * no longer be, reconnected. `cause` holds the underlying error.
 */
export class SseConnectionError extends Error {
  /** Connection attempts made in a row that failed, including the first one. */
  readonly attempts: number;

  /** Made by `readEvents()`; exported for `instanceof` checks. */
  constructor(message: string, attempts: number, cause: unknown) {
    super(message, { cause });
    this.name = 'SseConnectionError';
    this.attempts = attempts;
  }
}

/** `text` cut to `length` characters, with an ellipsis when it was longer: for error messages. */
export function shorten(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length)}…` : text;
}

/** An error's message, or the thrown value as text. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

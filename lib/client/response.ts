/**
 * Checks of a response before it is read: a 2xx status and a content type `readEvents()` reads, or an
 * `SseResponseError` that shows the first bytes the server sent.
 */
import { shorten, SseResponseError } from './errors.js';

const BODY_PREVIEW_BYTES = 512;
/** How long an error waits for the first bytes of a body that stays open (a login page that streams, a proxy). */
const BODY_PREVIEW_MS = 500;

/** The wire formats `readEvents()` reads. */
export type Format = 'sse' | 'ndjson';

/** The wire format of a 2xx response with a content type this module reads. */
export async function accept(response: Response): Promise<Format> {
  const contentType = response.headers.get('content-type');
  if (!response.ok) {
    const body = await preview(response);
    throw new SseResponseError(
      `${response.url || 'the server'} answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''}` +
        (body === '' ? '' : `: ${shorten(body, 120)}`),
      { status: response.status, contentType, body, url: response.url },
    );
  }
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'text/event-stream') return 'sse';
  if (type === 'application/x-ndjson' || type === 'application/ndjson') return 'ndjson';
  const body = await preview(response);
  throw new SseResponseError(
    `expected text/event-stream or application/x-ndjson from ${response.url || 'the server'}, got ` +
      `${contentType === null ? 'no Content-Type' : JSON.stringify(contentType)}` +
      (body === '' ? '' : `: ${shorten(body, 120)}`),
    { status: response.status, contentType, body, url: response.url },
  );
}

/** The first bytes of a body, for an error message, as many as arrive within `BODY_PREVIEW_MS`; never throws. */
async function preview(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  if (reader === undefined) return '';
  const chunks: Uint8Array[] = [];
  let length = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeUp = new Promise<undefined>((resolve) => (timer = setTimeout(resolve, BODY_PREVIEW_MS, undefined)));
  try {
    while (length < BODY_PREVIEW_BYTES) {
      const result = await Promise.race([reader.read(), timeUp]);
      if (result === undefined || result.done) break;
      chunks.push(result.value);
      length += result.value.byteLength;
    }
  } catch {
    // A body that fails midway still has its first bytes to show.
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(ignore);
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  // `stream: true` leaves out a character cut in half at the limit rather than showing U+FFFD for it.
  return new TextDecoder().decode(bytes.subarray(0, BODY_PREVIEW_BYTES), { stream: true });
}

/** A `Response`, or an object that looks enough like one (from another realm, or a fetch polyfill). */
export function isResponseLike(value: unknown): value is Response {
  if (value === null || typeof value !== 'object') return false;
  const candidate = value as Partial<Response>;
  return typeof candidate.status === 'number' && typeof candidate.headers?.get === 'function' && 'body' in candidate;
}

function ignore(): void {}

/**
 * Protocol presets: `sseStream()` options that make a route speak what a well-known client parses. Plain option
 * objects, with no dependency on either SDK: spread one into the options, `sseStream({ ...aiSdkUiMessageStream() })`.
 */
import type { LogEvent } from './event-shapes.js';
import type { SseStreamOptions } from './middleware.js';

/** The options a preset sets; spread them first, so options after them win. */
export type ProtocolPreset = Pick<SseStreamOptions, 'headers' | 'done' | 'logEvent' | 'errorEvent'>;

/**
 * The Vercel AI SDK's UI message stream protocol (`useChat`, `DefaultChatTransport`): the
 * `x-vercel-ai-ui-message-stream: v1` header, `data: [DONE]` at the end, the request's log records as transient
 * data parts `{ type: "data-log", data: { level, message, ...fields }, transient: true }` (delivered to `onData`,
 * not kept in the message), and errors as the SDK's error part `{ type: "error", errorText }`.
 *
 * @example
 * app.post('/api/chat', express.json(), sseStream({ ...aiSdkUiMessageStream() }), async (req, res) => {
 *   const result = streamText({ model, messages: convertToModelMessages(req.body.messages), abortSignal: res.sse.signal });
 *   await res.sse.pipe(result.toUIMessageStream());
 *   await res.sse.close();
 * });
 */
export function aiSdkUiMessageStream(): ProtocolPreset {
  return {
    headers: { 'x-vercel-ai-ui-message-stream': 'v1' },
    done: '[DONE]',
    logEvent: ({ type: _type, ...data }: LogEvent) => ({ type: 'data-log', data, transient: true }),
    errorEvent: ({ message }) => ({ type: 'error', errorText: message }),
  };
}

/**
 * The OpenAI chat completions stream, as the OpenAI SDKs read it (`chat.completions.create({ stream: true })`):
 * `data: [DONE]` at the end, no log events (the SDK would yield one as a chunk), and errors as
 * `{ error: { message, type: "server_error" } }`, which the SDK raises as an `APIError`. The route pushes
 * `chat.completion.chunk` objects itself.
 */
export function openAiChatStream(): ProtocolPreset {
  return {
    done: '[DONE]',
    logEvent: false,
    errorEvent: ({ message }) => ({ error: { message, type: 'server_error' } }),
  };
}

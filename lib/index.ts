export { sseStream, type SseStreamOptions } from './middleware.js';
export { SseTransport, type SseTransportOptions, type LogRecord } from './transport.js';
export { currentStream } from './context.js';
export { sseErrorHandler } from './errors.js';
export { closeAllStreams, openStreamCount, type CloseAllOptions } from './registry.js';
export type { SseStream, CloseReason, StreamSummary } from './stream.js';
export type { PushOptions } from './encode.js';

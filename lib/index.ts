export { sseStream, type SseStreamOptions } from './middleware';
export { SseTransport, type SseTransportOptions, type LogRecord } from './transport';
export { currentStream } from './context';
export { sseErrorHandler } from './errors';
export type { SseStream, CloseReason } from './stream';
export type { PushOptions } from './encode';

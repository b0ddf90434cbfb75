/**
 * What a route's log and error events look like (`sseStream({ logEvent, errorEvent })`): the protocol belongs to
 * the route, since the client that reads it (an `EventSource` page, the AI SDK, the OpenAI SDK) decides what it
 * can parse. Each stream carries its route's shapes; the transport, the error handler and the followers of a run
 * ask it through `shapesOf()`.
 */

/** A log record as `SseTransport` sends it by default, handed to `sseStream({ logEvent })`. */
export interface LogEvent {
  /** Always `'log'`. */
  type: 'log';
  /** The record's level, e.g. `'info'` (winston's own level, before any `colorize()`). */
  level: unknown;
  /** The record's message, when it has one. */
  message?: unknown;
  /** Every other field of the record. */
  [field: string]: unknown;
}

/** What `sseStream({ errorEvent })` is told of an error that must reach the client as an event. */
export interface ErrorEventInfo {
  /** The message that is safe to show: the error's own for an exposed 4xx, a generic text otherwise. */
  message: string;
  /**
   * The HTTP status the error stands for: the error's `status` or `statusCode` (400–599), 500 for anything else;
   * 503 when a resumable run's store is unavailable, 410 when the run is gone, 504 when it outlived its `ttl`, 500
   * when its producer vanished.
   */
  status: number;
}

/** Maps a log record to the data of its event, or `undefined` to drop it. */
export type LogEventMapper = (record: LogEvent) => unknown;
/** Maps an error to the data of its event. */
export type ErrorEventMapper = (info: ErrorEventInfo, error: unknown) => unknown;

/**
 * One route's shapes, resolved once by `sseStream()`.
 * @internal
 */
export interface EventShapes {
  /** `false`: no log events; `undefined`: the record as it is. */
  readonly log: LogEventMapper | false | undefined;
  /** `undefined`: `{ type: "error", message }`. */
  readonly error: ErrorEventMapper | undefined;
}

/** @internal */
export const DEFAULT_SHAPES: EventShapes = { log: undefined, error: undefined };

/**
 * Where a stream keeps its route's shapes; `Symbol.for`, so the CommonJS and the ES module build of this package
 * read the same property.
 * @internal
 */
export const EVENT_SHAPES: unique symbol = Symbol.for('express-sse-context.event-shapes.v1');

/** @internal */
export interface ShapedStream {
  readonly [EVENT_SHAPES]: EventShapes;
}

/**
 * The shapes of the route `stream` belongs to.
 * @internal
 */
export function shapesOf(stream: object): EventShapes {
  return (stream as Partial<ShapedStream>)[EVENT_SHAPES] ?? DEFAULT_SHAPES;
}

/**
 * The data of an error event: the route's `errorEvent` mapping, or `{ type: "error", message }` when there is none
 * or it throws (an error event must never fail to be sent because of its own mapping).
 * @internal
 */
export function errorEventData(shapes: EventShapes, info: ErrorEventInfo, error: unknown): unknown {
  if (shapes.error !== undefined) {
    try {
      const data = shapes.error(info, error);
      if (data !== undefined) return data;
    } catch {
      // Falls back to the default below.
    }
  }
  return { type: 'error', message: info.message };
}

/**
 * `res.sse.pipe()`: sends every item of a source (an async iterable, a web `ReadableStream`, a Node `Readable`) as
 * one event, at the pace the client reads, and cancels the source when the stream closes first.
 */
import type { Readable } from 'node:stream';
import { TextDecoder } from 'node:util';
import type { PushOptions } from './encode.js';
import { checkOptions, describe, optionalFunction, optionNames } from './options.js';
import type { PipeOptions, PipeSource, SseStream } from './sse-stream.js';

const KNOWN_OPTIONS = optionNames<PipeOptions>({ event: true, id: true, retry: true, map: true });

/** One way to read a source: the next item, and how to stop it early. */
interface Pull {
  next(): Promise<IteratorResult<unknown>>;
  cancel(reason: unknown): void;
}

/**
 * Sends `source` to `stream`, one event per item, through `send()` (so a slow client slows the source down). When
 * the stream closes first (the client left, a run was aborted) the source is cancelled: `reader.cancel()` for a
 * `ReadableStream`, `destroy()` for a Node `Readable`, `return()` for any other async iterable. Resolves `true` when
 * the source was sent whole, `false` when the stream closed first; rejects with what the source threw.
 * @internal
 */
export async function pipe<T>(stream: SseStream, source: PipeSource<T>, options?: PipeOptions<T>): Promise<boolean> {
  const { map, push } = pipeOptions(options);
  const pull = puller(source);
  const { signal } = stream;
  let decoder: TextDecoder | undefined;
  let cancelled = false;
  const cancel = (): void => {
    if (cancelled) return;
    cancelled = true;
    pull.cancel(signal.reason);
  };
  // The client may leave while the source is still thinking (a model call): waiting for its next item would keep
  // the source running, so the abort itself ends the wait.
  let endWait: (() => void) | undefined;
  const aborted = new Promise<undefined>((resolve) => (endWait = () => resolve(undefined)));
  const onAbort = (): void => {
    cancel();
    endWait?.();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      if (stream.closed) return false;
      const result = await Promise.race([pull.next(), aborted]);
      if (result === undefined || stream.closed) return false;
      let item = result.value;
      if (result.done === true) {
        const rest = decoder?.decode() ?? '';
        if (rest === '') return true;
        item = rest;
      } else if (item instanceof Uint8Array) {
        // Text from bytes: a character cut in half at a chunk's end waits for the rest of it.
        item = (decoder ??= new TextDecoder()).decode(item, { stream: true });
        if (item === '') continue;
      }
      const data = map === undefined ? item : map(item as T);
      if (data !== undefined && !(await stream.send(data, push))) return false;
      if (result.done === true) return true;
    }
  } catch (error) {
    // The source failing because it was cancelled is how a closed stream looks from inside it: not an error.
    if (stream.closed) return false;
    cancel();
    throw error;
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (stream.closed) cancel();
  }
}

function pipeOptions<T>(options: PipeOptions<T> | undefined): { map: PipeOptions<T>['map']; push: PushOptions | undefined } {
  if (options === undefined) return { map: undefined, push: undefined };
  checkOptions(options, 'pipe(source, options)', KNOWN_OPTIONS, '', 'pipe()');
  const { map, ...push } = options;
  optionalFunction(map, 'map');
  return { map, push: Object.keys(push).length === 0 ? undefined : push };
}

function puller(source: unknown): Pull {
  if (source !== null && typeof source === 'object') {
    const candidate = source as Partial<ReadableStream & Readable & AsyncIterable<unknown>>;
    if (typeof candidate.getReader === 'function') {
      const reader = (source as ReadableStream<unknown>).getReader();
      return {
        next: () => reader.read() as Promise<IteratorResult<unknown>>,
        cancel: (reason) => void reader.cancel(reason).catch(ignore),
      };
    }
    if (typeof candidate[Symbol.asyncIterator] === 'function') {
      const iterator = (source as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      if (typeof candidate.destroy === 'function') {
        const readable = source as Readable;
        return { next: () => iterator.next(), cancel: () => void readable.destroy() };
      }
      return {
        next: () => iterator.next(),
        // An async generator runs `return()` once its pending `next()` settles; its `finally` blocks run then.
        cancel: () => void Promise.resolve(iterator.return?.()).catch(ignore),
      };
    }
  }
  throw new TypeError(`source: expected an AsyncIterable, a ReadableStream or a Node Readable, got ${describe(source)}`);
}

function ignore(): void {}

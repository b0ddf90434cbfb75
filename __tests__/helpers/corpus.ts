/**
 * One corpus of events that every tested SSE client must read exactly (`__tests__/integration/clients/`): JSON, every
 * kind of line break at the start, in the middle and at the end, leading spaces and tabs, empty strings, non-ASCII
 * (CJK, emoji, U+2028/U+2029/U+0085, a value starting with U+FEFF), a 256 KB value, named events, ids, `retry`, and
 * comments between events. `playCorpus()` pushes it with pauses so that a 20 ms heartbeat lands between events all
 * along; `EXPECTED` is what a spec parser (the EventSource spec's "interpret an event stream") yields for it.
 */
import type { PushOptions, SseStream } from '../../lib';

export type CorpusStep =
  | { push: unknown; options?: PushOptions }
  | { comment: string }
  /** Milliseconds to wait: the heartbeat runs in between. */
  | { pause: number };

/** What a client should yield for one event: the data, the event type and the last event id (the spec's, carried over). */
export interface ExpectedEvent {
  data: string;
  /** `'message'` when the event had no `event:` field. */
  event: string;
  /** The stream's last event id after this event: the last `id:` seen so far, or `''`. */
  lastEventId: string;
  /** This event's own `id:`, or `''` (for clients that expose only that). */
  id: string;
}

/** The terminator `sseStream({ done })` sends last; clients read it as one more message. */
export const DONE = '[DONE]';
/** The heartbeat of the corpus routes. */
export const CORPUS_HEARTBEAT = 20;
/** The `retry` of the corpus routes (at open) and of one event of the corpus. */
export const CORPUS_RETRY = 2000;

/** 256 KB of varied text (ASCII with some multi-byte characters, so chunk boundaries fall inside characters too). */
export const BIG_VALUE = Array.from({ length: 256 * 1024 / 32 }, (_, i) => `${String(i).padStart(6, '0')} big é 世 ${'x'.repeat(16)}`.slice(0, 32)).join('');

const EVENT_DATA: unknown[] = [
  { type: 'start', n: 1 },
  { text: 'héllo 世界 🎉', list: [1, 2, 3], nothing: null, nested: { deep: { er: true } } },
  'plain text',
  '',
  '\n',
  '\r\n',
  '\r',
  '\n\n',
  '\nstarts with LF',
  '\r\nstarts with CRLF',
  '\rstarts with CR',
  'ends with LF\n',
  'ends with CRLF\r\n',
  'ends with CR\r',
  'middle\nLF',
  'middle\r\nCRLF',
  'middle\rCR',
  'all\n\r\n\rkinds\n\nof\r\rbreaks\r\n\r\n',
  ' one leading space',
  '   three leading spaces',
  '\tleading tab',
  ' \t \tspaces and tabs',
  'line one\n  indented line two\n\ttabbed line three',
  '世界 CJK 漢字 かな 한글',
  'emoji 🎉 👩‍👩‍👧 ✓ 🇫🇷',
  'U+2028 \u2028 inside',
  'U+2029 \u2029 inside',
  '\u2028 starts with U+2028',
  'U+0085 \u0085 inside',
  '\uFEFFstarts with U+FEFF',
  { json: 'with \u2028 and \u2029 and \u0085 inside' },
  BIG_VALUE,
  ':starts with a colon',
  'data: looks like a field\nid: 666\nevent: admin',
  null,
  0,
  true,
  [1, 'two', { three: 3 }],
];

/** Named events, ids and retry, on data of their own. */
const WITH_OPTIONS: Array<{ push: unknown; options: PushOptions }> = [
  { push: { v: 1 }, options: { event: 'update' } },
  { push: 'with id 42', options: { id: 42 } },
  { push: 'no id: the last one carries over', options: {} },
  { push: 'named, with an id', options: { event: 'custom-name', id: 'a-1' } },
  { push: 'with retry', options: { retry: CORPUS_RETRY } },
  { push: 'named in Unicode', options: { event: 'événement' } },
  { push: 'id with dots', options: { id: 'run.7' } },
  { push: '\nnamed, starting with LF', options: { event: 'update', id: 'run.8' } },
];

/** The corpus in the order it is pushed: events, comments between them, and pauses for the heartbeat. */
export const CORPUS: CorpusStep[] = (() => {
  const steps: CorpusStep[] = [];
  const events: CorpusStep[] = [...EVENT_DATA.map((push) => ({ push })), ...WITH_OPTIONS];
  events.forEach((event, i) => {
    steps.push(event);
    if (i % 5 === 2) steps.push({ comment: i % 2 === 0 ? 'a comment between events' : 'a comment\nof two lines' });
    if (i % 7 === 6) steps.push({ comment: '' });
    // Longer than the heartbeat: at least one heartbeat lands here.
    if (i % 4 === 3) steps.push({ pause: CORPUS_HEARTBEAT + 15 });
  });
  return steps;
})();

/** Pushes the corpus to a stream (the heartbeat keeps running in the pauses), then `close()` sends `DONE`. */
export async function playCorpus(sse: SseStream): Promise<void> {
  for (const step of CORPUS) {
    if ('pause' in step) await new Promise((resolve) => setTimeout(resolve, step.pause));
    else if ('comment' in step) sse.comment(step.comment);
    else if (!(await sse.send(step.push, step.options))) return;
  }
  await sse.close();
}

/** The pushed values alone, for the NDJSON route (where names, ids, retry and comments do not exist). */
export const CORPUS_VALUES: unknown[] = CORPUS.flatMap((step) => ('push' in step ? [step.push] : []));

/**
 * What a spec parser yields for the corpus: a string's lines (split at CRLF, CR or LF) joined with LF, any other value
 * as JSON; `message` for unnamed events; the last event id carried over from event to event; then `DONE`.
 */
export const EXPECTED: ExpectedEvent[] = (() => {
  const expected: ExpectedEvent[] = [];
  let lastEventId = '';
  for (const step of CORPUS) {
    if (!('push' in step)) continue;
    const { push, options = {} } = step;
    const data = typeof push === 'string' ? push.replace(/\r\n|\r/g, '\n') : JSON.stringify(push);
    const id = options.id === undefined ? '' : String(options.id);
    if (options.id !== undefined) lastEventId = id;
    expected.push({ data, event: options.event ?? 'message', lastEventId, id });
  }
  expected.push({ data: DONE, event: 'message', lastEventId, id: '' });
  return expected;
})();

/**
 * The conformance suite of `ResumeStore` (lib/store/contract.ts): what every store must do, run against each of them
 * (`__tests__/resume/memory-store.test.ts`, `__tests__/integration/redis-store.test.ts`). Store-specific behaviour
 * (timers, leases that lapse) is tested next to each store.
 *
 * Runs are long (a minute's ttl and lease), so nothing here depends on time passing; every test uses keys of its own.
 */
import { randomUUID } from 'node:crypto';
import { eventId } from '../../lib/encode';
import type { ResumeStore, RunSettings } from '../../lib/store/contract';
import { eventually } from './sse-client';

export interface StoreUnderTest {
  store: ResumeStore;
  teardown(): Promise<void>;
}

const SETTINGS: RunSettings = { ttl: 60_000, lease: 60_000, maxEvents: 1000 };

/** A key no other test (nor an earlier run of this one against the same Redis) uses. */
const freshKey = (label: string): string => `${label}-${randomUUID()}`;

const body = (text: string): string => `data: ${text}\n\n`;

export function describeResumeStore(name: string, setup: () => Promise<StoreUnderTest>): void {
  describe(`ResumeStore contract: ${name}`, () => {
    let subject: StoreUnderTest;
    let store: ResumeStore;

    beforeAll(async () => {
      subject = await setup();
      store = subject.store;
    });
    afterAll(async () => {
      await subject?.teardown();
    });

    async function opened(label: string, settings: RunSettings = SETTINGS): Promise<{ key: string; runId: string }> {
      const key = freshKey(label);
      const { runId, created } = await store.open(key, settings);
      expect(created).toBe(true);
      return { key, runId };
    }

    it('reads an unknown key as no run at all', async () => {
      await expect(store.read(freshKey('unknown'), 0, 10)).resolves.toEqual({
        runId: undefined,
        events: [],
        missed: 0,
        tail: 0,
        end: undefined,
      });
    });

    it('lets exactly one of 20 concurrent opens create the run; all report the same run id', async () => {
      const key = freshKey('open');
      const results = await Promise.all(Array.from({ length: 20 }, () => store.open(key, SETTINGS)));
      expect(results.filter((result) => result.created)).toHaveLength(1);
      expect(new Set(results.map((result) => result.runId)).size).toBe(1);
      expect(results[0]!.runId).toMatch(/^[0-9a-z]{12}$/);
      await expect(store.open(key, SETTINGS)).resolves.toEqual({ runId: results[0]!.runId, created: false });
    });

    it('gives different keys different runs', async () => {
      const first = await opened('run-a');
      const second = await opened('run-b');
      expect(first.runId).not.toBe(second.runId);
    });

    it('numbers appended events 1..n and writes the id line in front of each body', async () => {
      const { key, runId } = await opened('append');
      await expect(store.append(key, runId, [body('a'), body('b')])).resolves.toBe(2);
      await expect(store.append(key, runId, [body('c')])).resolves.toBe(3);
      await expect(store.append(key, runId, [])).resolves.toBe(3);
      const read = await store.read(key, 0, 100);
      expect(read).toEqual({
        runId,
        events: ['a', 'b', 'c'].map((text, index) => ({ seq: index + 1, frame: `id: ${eventId(runId, index + 1)}\n${body(text)}` })),
        missed: 0,
        tail: 3,
        end: undefined,
      });
    });

    it('keeps bodies byte for byte (multi-line, unicode, empty)', async () => {
      const { key, runId } = await opened('bytes');
      const bodies = ['event: x\ndata: 1\ndata: 2\n\n', 'data: 🦦 ünïcode\n\n', '', 'data: \\n "quoted"\n\n'];
      await store.append(key, runId, bodies);
      const { events } = await store.read(key, 0, 100);
      expect(events.map((event) => event.frame)).toEqual(bodies.map((text, index) => `id: ${runId}.${index + 1}\n${text}`));
    });

    it('numbers concurrent appends without gaps or duplicates', async () => {
      const { key, runId } = await opened('concurrent');
      const positions = await Promise.all(Array.from({ length: 20 }, (_, index) => store.append(key, runId, [body(`${index}`)])));
      expect([...positions].sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: 20 }, (_, index) => index + 1));
      const { events, tail } = await store.read(key, 0, 100);
      expect(tail).toBe(20);
      expect(events.map((event) => event.seq)).toEqual(Array.from({ length: 20 }, (_, index) => index + 1));
      // Each append's body sits at the position that append resolved with.
      positions.forEach((seq, index) => expect(events[Number(seq) - 1]!.frame).toBe(`id: ${runId}.${seq}\n${body(`${index}`)}`));
    });

    it('reads after a position, at most `limit` events, and reports the tail', async () => {
      const { key, runId } = await opened('read');
      await store.append(key, runId, ['1', '2', '3', '4', '5'].map(body));
      const seqs = async (after: number, limit: number): Promise<number[]> =>
        (await store.read(key, after, limit)).events.map((event) => event.seq);
      await expect(seqs(0, 2)).resolves.toEqual([1, 2]);
      await expect(seqs(2, 2)).resolves.toEqual([3, 4]);
      await expect(seqs(4, 10)).resolves.toEqual([5]);
      await expect(seqs(5, 10)).resolves.toEqual([]);
      await expect(seqs(1000, 10)).resolves.toEqual([]);
      const read = await store.read(key, 1, 1);
      expect(read).toMatchObject({ runId, tail: 5, missed: 0, end: undefined });
    });

    it('reports the end only once the events read reach the tail', async () => {
      const { key, runId } = await opened('end');
      await store.append(key, runId, ['1', '2', '3'].map(body));
      await expect(store.end(key, runId, 'done')).resolves.toBe(true);
      await expect(store.read(key, 0, 2)).resolves.toMatchObject({ tail: 3, end: undefined });
      const rest = await store.read(key, 2, 10);
      expect(rest.events.map((event) => event.seq)).toEqual([3]);
      expect(rest.end).toBe('done');
      // A limit that stops exactly at the tail still reaches it.
      await expect(store.read(key, 0, 3)).resolves.toMatchObject({ tail: 3, end: 'done' });
      await expect(store.read(key, 3, 10)).resolves.toMatchObject({ events: [], tail: 3, end: 'done' });
      await expect(store.end(key, runId, 'done')).resolves.toBe(false);
      // The ended run stays the key's run (until it expires): opening reports it.
      await expect(store.open(key, SETTINGS)).resolves.toEqual({ runId, created: false });
    });

    it('keeps the end reason it was given', async () => {
      const { key, runId } = await opened('expired');
      await store.end(key, runId, 'expired');
      await expect(store.read(key, 0, 10)).resolves.toEqual({ runId, events: [], missed: 0, tail: 0, end: 'expired' });
    });

    it('refuses appends and renewals after the end, and keeps the tail', async () => {
      const { key, runId } = await opened('after-end');
      await store.append(key, runId, [body('1')]);
      await store.end(key, runId, 'done');
      await expect(store.append(key, runId, [body('2')])).resolves.toBe(false);
      await expect(store.renew(key, runId)).resolves.toBe(false);
      await expect(store.read(key, 0, 10)).resolves.toMatchObject({ tail: 1, end: 'done' });
      expect((await store.read(key, 0, 10)).events).toHaveLength(1);
    });

    it('fences a producer with the wrong run id: it appends, renews and ends nothing', async () => {
      const { key, runId } = await opened('fence');
      const other = await opened('fence-other');
      await store.append(key, runId, [body('1')]);
      await expect(store.renew(key, runId)).resolves.toBe(true);
      for (const wrong of [other.runId, 'nonexistent1', '']) {
        await expect(store.append(key, wrong, [body('intruder')])).resolves.toBe(false);
        await expect(store.renew(key, wrong)).resolves.toBe(false);
        await expect(store.end(key, wrong, 'done')).resolves.toBe(false);
      }
      await expect(store.read(key, 0, 10)).resolves.toMatchObject({ runId, tail: 1, end: undefined });
      // The real producer goes on.
      await expect(store.append(key, runId, [body('2')])).resolves.toBe(2);
      // Nor does a run id reach another key's run.
      await expect(store.append(freshKey('fence-unknown'), runId, [body('x')])).resolves.toBe(false);
    });

    it('aborts a live run as "aborted", whoever asks; the producer then loses its lease', async () => {
      const { key, runId } = await opened('abort');
      await store.append(key, runId, ['1', '2'].map(body));
      await expect(store.abort(key)).resolves.toBe(true);
      await expect(store.renew(key, runId)).resolves.toBe(false);
      await expect(store.append(key, runId, [body('3')])).resolves.toBe(false);
      await expect(store.end(key, runId, 'done')).resolves.toBe(false);
      await expect(store.abort(key)).resolves.toBe(false);
      const read = await store.read(key, 0, 10);
      expect(read.events.map((event) => event.seq)).toEqual([1, 2]);
      expect(read).toMatchObject({ tail: 2, end: 'aborted' });
      await expect(store.abort(freshKey('abort-unknown'))).resolves.toBe(false);
    });

    it('does not abort a run that already ended', async () => {
      const { key, runId } = await opened('abort-ended');
      await store.end(key, runId, 'done');
      await expect(store.abort(key)).resolves.toBe(false);
      await expect(store.read(key, 0, 10)).resolves.toMatchObject({ end: 'done' });
    });

    it('with replaceEnded, replaces a run that ended with an empty new one and wakes its watchers; keeps a live one', async () => {
      const replacing = { ...SETTINGS, replaceEnded: true };
      const { key, runId } = await opened('replace', replacing);
      await store.append(key, runId, ['1', '2'].map(body));
      await expect(store.open(key, replacing)).resolves.toEqual({ runId, created: false });
      await store.end(key, runId, 'aborted');
      // Without the setting an ended run is kept for late clients.
      await expect(store.open(key, SETTINGS)).resolves.toEqual({ runId, created: false });
      let wakes = 0;
      const stop = await store.watch(key, () => (wakes += 1));
      const replaced = await store.open(key, replacing);
      expect(replaced.created).toBe(true);
      expect(replaced.runId).not.toBe(runId);
      await eventually(() => wakes > 0, 5000, 'the watcher of the old run woken by the new one');
      await expect(store.read(key, 0, 10)).resolves.toEqual({ runId: replaced.runId, events: [], missed: 0, tail: 0, end: undefined });
      await expect(store.append(key, runId, [body('old')])).resolves.toBe(false);
      await expect(store.append(key, replaced.runId, [body('new')])).resolves.toBe(1);
      const results = await Promise.all(Array.from({ length: 10 }, () => store.open(key, replacing)));
      expect(results.every((result) => !result.created && result.runId === replaced.runId)).toBe(true);
      stop();
    });

    it('with replaceLive, replaces even a live run: the new one holds the lease, the old producer is refused', async () => {
      const { key, runId } = await opened('replace-live');
      await store.append(key, runId, ['1'].map(body));
      let wakes = 0;
      const stop = await store.watch(key, () => (wakes += 1));
      const replaced = await store.open(key, { ...SETTINGS, replaceLive: true });
      expect(replaced.created).toBe(true);
      expect(replaced.runId).not.toBe(runId);
      await eventually(() => wakes > 0, 5000, 'the watcher of the old run woken by the new one');
      await expect(store.append(key, runId, [body('old')])).resolves.toBe(false);
      await expect(store.renew(key, runId)).resolves.toBe(false);
      await expect(store.append(key, replaced.runId, [body('new')])).resolves.toBe(1);
      await expect(store.read(key, 0, 10)).resolves.toMatchObject({ runId: replaced.runId, tail: 1, end: undefined });
      stop();
    });

    it('keeps the last maxEvents events and counts what a reader missed', async () => {
      const { key, runId } = await opened('bounded', { ...SETTINGS, maxEvents: 5 });
      await store.append(key, runId, ['1', '2', '3'].map(body));
      // One batch larger than the bound, then single appends.
      await store.append(key, runId, ['4', '5', '6', '7', '8', '9', '10'].map(body));
      await store.append(key, runId, [body('11')]);
      await store.append(key, runId, [body('12')]);
      const all = await store.read(key, 0, 100);
      expect(all.events.map((event) => event.seq)).toEqual([8, 9, 10, 11, 12]);
      expect(all.events[0]!.frame).toBe(`id: ${runId}.8\n${body('8')}`);
      expect(all).toMatchObject({ missed: 7, tail: 12 });
      await expect(store.read(key, 3, 2)).resolves.toMatchObject({ missed: 4, events: [{ seq: 8 }, { seq: 9 }] });
      await expect(store.read(key, 7, 100)).resolves.toMatchObject({ missed: 0 });
      await expect(store.read(key, 9, 100)).resolves.toMatchObject({ missed: 0, events: [{ seq: 10 }, { seq: 11 }, { seq: 12 }] });
      await expect(store.read(key, 12, 100)).resolves.toMatchObject({ missed: 0, events: [] });
      // The end of a bounded run is reported like any other.
      await store.end(key, runId, 'done');
      await expect(store.read(key, 0, 100)).resolves.toMatchObject({ missed: 7, end: 'done' });
    });

    it('wakes a watcher on append and on end, and no more once it stopped watching', async () => {
      const { key, runId } = await opened('watch');
      let wakesA = 0;
      let wakesB = 0;
      const stopA = await store.watch(key, () => (wakesA += 1));
      const stopB = await store.watch(key, () => (wakesB += 1));
      await store.append(key, runId, [body('1')]);
      await eventually(() => wakesA > 0 && wakesB > 0, 5000, 'both watchers woken by an append');
      stopA();
      stopA(); // a second stop is harmless, and stops nothing else
      const [a, b] = [wakesA, wakesB];
      await store.end(key, runId, 'done');
      // B still watches the same key: once its wake for the end arrived, A's would have too.
      await eventually(() => wakesB > b, 5000, 'the remaining watcher woken by the end');
      expect(wakesA).toBe(a);
      stopB();
    });

    it('calls the same callback once per watch it was given to, and stops each watch separately', async () => {
      const { key, runId } = await opened('watch-twice');
      let wakes = 0;
      const callback = (): void => {
        wakes += 1;
      };
      const first = await store.watch(key, callback);
      const second = await store.watch(key, callback);
      let barrier = 0;
      const stopBarrier = await store.watch(key, () => (barrier += 1));
      await store.append(key, runId, [body('1')]);
      await eventually(() => barrier >= 1 && wakes >= 2, 5000, 'both watches woken');
      first();
      const before = wakes;
      await store.append(key, runId, [body('2')]);
      await eventually(() => barrier >= 2, 5000, 'the barrier watcher woken again');
      expect(wakes).toBeGreaterThan(before);
      second();
      stopBarrier();
    });

    it('wakes a watcher that started before the run was opened', async () => {
      const key = freshKey('watch-early');
      let wakes = 0;
      const stop = await store.watch(key, () => (wakes += 1));
      const { runId } = await store.open(key, SETTINGS);
      await store.append(key, runId, [body('1')]);
      await eventually(() => wakes > 0, 5000, 'the early watcher woken');
      stop();
    });

    it('keeps keys apart: reads, wakes and ends of one key never show in another', async () => {
      const first = await opened('isolated-a');
      const second = await opened('isolated-b');
      let wakesFirst = 0;
      let wakesSecond = 0;
      const stopFirst = await store.watch(first.key, () => (wakesFirst += 1));
      const stopSecond = await store.watch(second.key, () => (wakesSecond += 1));
      await store.append(second.key, second.runId, ['b1', 'b2'].map(body));
      await store.end(second.key, second.runId, 'done');
      await eventually(() => wakesSecond >= 2, 5000, 'the second key woken twice');
      expect(wakesFirst).toBe(0);
      await store.append(first.key, first.runId, [body('a1')]);
      const read = await store.read(first.key, 0, 100);
      expect(read).toMatchObject({ runId: first.runId, tail: 1, end: undefined });
      expect(read.events.map((event) => event.frame)).toEqual([`id: ${first.runId}.1\n${body('a1')}`]);
      await expect(store.read(second.key, 0, 100)).resolves.toMatchObject({ runId: second.runId, tail: 2, end: 'done' });
      stopFirst();
      stopSecond();
    });
  });
}

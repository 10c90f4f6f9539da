/**
 * The node's PCM timeline on real decodes (ffmpeg): it plays on through the tracks the
 * hub named ahead (`next`, then `upcoming`) without being told again — what keeps a
 * group playing while the hub is away — gaplessly, frame for frame.
 */
import { strict as assert } from 'node:assert';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openDecoder } from '../src/node/decode/ffmpeg.js';
import { PcmTimeline } from '../src/node/player/pcm-timeline.js';
import type { TrackRef } from '../src/protocol/schemas.js';
import { makeTone } from './helpers/audio.js';
import { tempDir } from './helpers/processes.js';

const RATE = 48000;

type Block = NonNullable<ReturnType<PcmTimeline['take']>>;

/** Takes every block the timeline has, in `frames` steps, until it has finished and is empty. */
async function drain(timeline: PcmTimeline, frames: number, onBlock: (block: Block) => void): Promise<void> {
  for (;;) {
    const block = timeline.take(frames);
    if (!block) {
      if (timeline.finished && timeline.bufferedFrames === 0) return;
      await timeline.whenMoreData();
      continue;
    }
    onBlock(block);
  }
}

/** Drains the timeline (after the blocks in `parts`, taken already), closes it, and returns every sample in one array. */
async function decodeRest(timeline: PcmTimeline, frames: number, parts: Int16Array[] = []): Promise<Int16Array> {
  await drain(timeline, frames, (block) => parts.push(block.pcm.slice()));
  await timeline.close();
  const all = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, at), (at += p.length);
  return all;
}

describe('PcmTimeline', () => {
  it('plays on through next and the upcoming tracks on its own, gaplessly, then finishes', async () => {
    const dir = await tempDir('firefly-timeline-');
    const files = new Map<number, string>();
    const refs: TrackRef[] = [];
    for (const [i, seconds] of [1, 0.5, 0.75, 0.25].entries()) {
      const file = join(dir, `t${i}.wav`);
      await makeTone(file, { format: 'wav', seconds, sampleRate: RATE, frequency: 440 * (i + 1) });
      files.set(i + 1, file);
      refs.push({ entryId: i + 1, contentId: String(i + 1).repeat(64).slice(0, 64), format: 'wav', durationMs: seconds * 1000 });
    }
    const errors: string[] = [];
    const timeline = new PcmTimeline(
      refs[0],
      0,
      refs[1],
      async (t) => createReadStream(files.get(t.entryId)!),
      openDecoder,
      { sampleRate: RATE, channels: 2, aheadFrames: RATE, readFrames: 4096 },
      (_entry, message) => errors.push(message),
      refs.slice(2),
    );
    const framesPer = new Map<number, number>();
    let expectedTimeline = 0;
    await drain(timeline, 4800, (block) => {
      // Gapless: every block starts where the last one ended, across track changes.
      assert.equal(block.timelineFrame, expectedTimeline);
      assert.equal(block.trackFrame, framesPer.get(block.entryId) ?? 0);
      const n = block.pcm.length / 2;
      expectedTimeline += n;
      framesPer.set(block.entryId, (framesPer.get(block.entryId) ?? 0) + n);
    });
    await timeline.close();
    assert.deepEqual(errors, []);
    assert.deepEqual([...framesPer], [[1, RATE], [2, RATE / 2], [3, RATE * 0.75], [4, RATE / 4]]);
  });

  it('a new next replaces the upcoming list it was given before', async () => {
    const dir = await tempDir('firefly-timeline-');
    const file = join(dir, 'a.wav');
    await makeTone(file, { format: 'wav', seconds: 0.25, sampleRate: RATE });
    const ref = (entryId: number): TrackRef => ({ entryId, contentId: 'ab'.repeat(32), format: 'wav', durationMs: 250 });
    const timeline = new PcmTimeline(ref(1), 0, ref(2), async () => createReadStream(file), openDecoder, { sampleRate: RATE, channels: 2, aheadFrames: RATE * 4, readFrames: 4096 }, () => undefined, [ref(3), ref(4)]);
    assert.equal(timeline.decodingEntryId, 1);
    timeline.setNext(ref(7), []);
    const order: number[] = [];
    await drain(timeline, 48000, (block) => {
      if (order.at(-1) !== block.entryId) order.push(block.entryId);
    });
    await timeline.close();
    assert.deepEqual(order, [1, 7]);
  });
  it('decodes no further ahead than it is allowed, and on once the limit is raised (a prepared session before its start)', async () => {
    const dir = await tempDir('firefly-timeline-');
    const file = join(dir, 'long.wav');
    await makeTone(file, { format: 'wav', seconds: 3, sampleRate: RATE });
    const ref: TrackRef = { entryId: 1, contentId: 'cd'.repeat(32), format: 'wav', durationMs: 3000 };
    const timeline = new PcmTimeline(ref, 0, null, async () => createReadStream(file), openDecoder, { sampleRate: RATE, channels: 2, aheadFrames: RATE / 2, readFrames: 4096 }, () => undefined);
    const settled = async () => {
      // Decoding stops once the limit is reached: wait until nothing more arrives for a while.
      for (let last = -1; last !== timeline.bufferedFrames; ) {
        last = timeline.bufferedFrames;
        await new Promise((r) => setTimeout(r, 150));
      }
      return timeline.bufferedFrames;
    };
    const before = await settled();
    assert.ok(before >= RATE / 2 && before < RATE / 2 + 4096, `decoded ${before} frames ahead with a limit of ${RATE / 2}`);
    timeline.setAhead(RATE * 2);
    const after = await settled();
    assert.ok(after >= RATE * 2 && after < RATE * 2 + 4096, `decoded ${after} frames ahead with a limit of ${RATE * 2}`);
    await timeline.close();
  });

  it('a start decoded earlier (an intro) plays at once and the decoder continues right after it, sample for sample', async () => {
    const dir = await tempDir('firefly-timeline-');
    for (const format of ['mp3', 'flac', 'ogg'] as const) {
      const file = join(dir, `intro.${format}`);
      // 44.1 kHz, resampled to 48 kHz; compared sample for sample, so a frame off anywhere shows.
      await makeTone(file, { format, seconds: 2, sampleRate: 44100, frequency: 437 });
      const ref: TrackRef = { entryId: 1, contentId: 'ef'.repeat(32), format, durationMs: 2000 };
      const introFrames = RATE / 2;
      const decodeAll = (timeline: PcmTimeline) => decodeRest(timeline, 4800);
      let intro: Int16Array | undefined;
      const options = (seed?: Int16Array) => ({ sampleRate: RATE, channels: 2, aheadFrames: RATE * 4, readFrames: 4096, seed, introFrames, onIntro: (_t: TrackRef, pcm: Int16Array) => (intro = pcm) });
      const open = async () => createReadStream(file);
      const plain = await decodeAll(new PcmTimeline(ref, 0, null, open, openDecoder, options(), () => undefined));
      assert.ok(intro, `${format}: the decode from frame 0 handed on its start`);
      assert.equal(intro.length, introFrames * 2);
      assert.deepEqual(intro, plain.subarray(0, introFrames * 2), `${format}: the intro is the track's first frames`);
      for (const startFrame of [0, 1234]) {
        const seeded = new PcmTimeline(ref, startFrame, null, open, openDecoder, options(intro), () => undefined);
        assert.equal(seeded.bufferedFrames, introFrames - startFrame, `${format}: the intro is there before the decoder said anything`);
        const got = await decodeAll(seeded);
        assert.equal(got.length, plain.length - startFrame * 2, `${format} from ${startFrame}: as long as a plain decode from there`);
        assert.ok(
          got.every((v, i) => v === plain[i + startFrame * 2]),
          `${format} from ${startFrame}: the same samples as a plain decode (first difference at sample ${got.findIndex((v, i) => v !== plain[i + startFrame * 2])})`,
        );
      }
    }
  });

  it('holds the decoder after a cached start until released or the start runs low (openBelowFrames), then plays on sample for sample', async () => {
    const dir = await tempDir('firefly-timeline-');
    const file = join(dir, 'held.flac');
    await makeTone(file, { format: 'flac', seconds: 1.5, sampleRate: 44100, frequency: 389 });
    const ref: TrackRef = { entryId: 1, contentId: '5e'.repeat(32), format: 'flac', durationMs: 1500 };
    const introFrames = RATE / 2;
    const below = Math.round(RATE * 0.3);
    let opens = 0;
    const open = async () => (opens++, createReadStream(file));
    let intro: Int16Array | undefined;
    const options = (seed?: Int16Array, openBelowFrames?: number) => ({ sampleRate: RATE, channels: 2, aheadFrames: RATE * 4, readFrames: 4096, seed, introFrames, onIntro: (_t: TrackRef, pcm: Int16Array) => (intro = pcm), ...(openBelowFrames !== undefined && { openBelowFrames }) });
    const collect = (timeline: PcmTimeline, parts: Int16Array[]) => decodeRest(timeline, 960, parts);
    const plain = await collect(new PcmTimeline(ref, 0, null, open, openDecoder, options(), () => undefined), []);
    assert.ok(intro);
    opens = 0;

    // Not released: opens once fewer than `below` frames of the start are left.
    const low = new PcmTimeline(ref, 0, null, open, openDecoder, options(intro, below), () => undefined);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(opens, 0, 'nothing opened while the cached start is long enough');
    assert.ok(low.holding);
    const parts: Int16Array[] = [];
    while (low.bufferedFrames - 960 >= below) parts.push(low.take(960)!.pcm.slice());
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(opens, 0, `still held with ${low.bufferedFrames} frames left (≥ ${below})`);
    parts.push(low.take(960)!.pcm.slice());
    const got = await collect(low, parts);
    assert.equal(opens, 1, 'opened once the start ran low');
    assert.equal(got.length, plain.length);
    assert.ok(got.every((v, i) => v === plain[i]), `held then opened: the same samples as a plain decode (first difference at ${got.findIndex((v, i) => v !== plain[i])})`);

    // Released: opens at once, before anything was taken.
    opens = 0;
    const released = new PcmTimeline(ref, 0, null, open, openDecoder, options(intro, below), () => undefined);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(opens, 0);
    released.release();
    assert.equal(released.holding, false, 'released: no longer held');
    const more = released.whenMoreData();
    await more;
    assert.equal(opens, 1, 'released: opened with the whole start still buffered');
    assert.ok(released.bufferedFrames > introFrames, 'decoded past the cached start without anything taken');
    const all = await collect(released, []);
    assert.ok(all.length === plain.length && all.every((v, i) => v === plain[i]), 'released: the same samples as a plain decode');
  });

  it('steps back over the frames it handed out (a stop parks the running decode), and takes a cached start in front, sample for sample', async () => {
    const dir = await tempDir('firefly-timeline-');
    const file = join(dir, 'back.flac');
    await makeTone(file, { format: 'flac', seconds: 2, sampleRate: 44100, frequency: 523 });
    const ref: TrackRef = { entryId: 1, contentId: '0a'.repeat(32), format: 'flac', durationMs: 2000 };
    const open = async () => createReadStream(file);
    const keepFrames = RATE / 2;
    const options = { sampleRate: RATE, channels: 2, aheadFrames: RATE * 4, readFrames: 4096, keepFrames };
    const collect = async (timeline: PcmTimeline) => {
      const parts: Int16Array[] = [];
      await drain(timeline, 480, (block) => parts.push(block.pcm.slice()));
      const all = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) all.set(p, at), (at += p.length);
      return all;
    };
    const plain = new PcmTimeline(ref, 0, null, open, openDecoder, { ...options, keepFrames: 0 }, () => undefined);
    const whole = await collect(plain);
    await plain.close();
    const same = (got: Int16Array, from: number, what: string) => {
      assert.equal(got.length, whole.length - from * 2, `${what}: as long as a plain decode from frame ${from}`);
      const diff = got.findIndex((v, i) => v !== whole[i + from * 2]);
      assert.equal(diff, -1, `${what}: the same samples as a plain decode from frame ${from} (first difference at sample ${diff})`);
    };

    // Played 0.8 s in (taken and dropped, in uneven steps), then back by 0.3 s.
    const t = new PcmTimeline(ref, 0, null, open, openDecoder, options, () => undefined);
    let taken = 0;
    while (taken < RATE * 0.8) {
      while (t.bufferedFrames < 1000) await t.whenMoreData();
      taken += taken % 3 === 0 ? t.drop(333) : t.take(977)!.pcm.length / 2;
    }
    assert.ok(t.rewindableFrames >= keepFrames && t.rewindableFrames < keepFrames + 4096, `keeps about ${keepFrames} frames to step back over, not ${t.rewindableFrames}`);
    const target = taken - Math.round(RATE * 0.3);
    assert.equal(t.rewind(taken - target), taken - target);
    assert.equal(t.headFrame, target);
    assert.ok(t.prepend(new Int16Array(4), 0) === false, 'a prepend must end exactly at the head');
    same(await collect(t), target, 'rewound');
    await t.close();

    // No further back than it kept.
    const short = new PcmTimeline(ref, 0, null, open, openDecoder, options, () => undefined);
    while (short.bufferedFrames < RATE) await short.whenMoreData();
    short.drop(RATE);
    const kept = short.rewindableFrames;
    assert.ok(kept >= keepFrames && kept < keepFrames + 4096, `keeps about ${keepFrames} frames, not ${kept}`);
    assert.equal(short.rewind(RATE), kept, 'steps back over what it kept, no further');
    assert.equal(short.headFrame, RATE - kept);
    assert.equal(short.rewindableFrames, 0);
    await short.close();

    // Started at 0.1 s (a decode parked there), the first 0.1 s put in front: a play from 0.
    const at = Math.round(RATE * 0.1);
    const parked = new PcmTimeline(ref, at, null, open, openDecoder, options, () => undefined);
    while (parked.bufferedFrames < 4096) await parked.whenMoreData();
    assert.equal(parked.prepend(whole.slice(0, at * 2), 0), true);
    assert.equal(parked.headFrame, 0);
    same(await collect(parked), 0, 'cached start in front of a decode from 0.1 s');
    await parked.close();
  });
});

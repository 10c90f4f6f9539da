import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HubClock } from '../src/clock/hub-clock.js';
import { DEFAULT_SCHEDULER, Scheduler } from '../src/node/player/scheduler.js';

const RATE = 48000;
/** Hub time = local time + offset (a perfectly estimated clock). */
function offsetClock(offsetMs: number): HubClock {
  return { toHub: (l) => l + offsetMs, toLocal: (h) => h - offsetMs, synced: true, errorMs: 0 };
}
const options = { sampleRate: RATE, ...DEFAULT_SCHEDULER };

describe('Scheduler', () => {
  it('writes silence up to the start instant, then the first frame exactly there', () => {
    const s = new Scheduler(options, offsetClock(1000), { atHubMs: 2100, frame: 0 });
    // Local 1000 = hub 2000: the device plays the next frame 20 ms from now (hub 2020), 80 ms before the start.
    const d = s.decide({ localNowMs: 1000, delayFrames: 960, nextFrame: 0, latencyMs: 0 }, 480);
    assert.equal(Math.round(d.errorFrames), -3840);
    assert.deepEqual(d.correction, { kind: 'silence', frames: 480 });
    // After exactly the missing silence, no correction: frame 0 lands on the anchor.
    const e = s.decide({ localNowMs: 1000, delayFrames: 960 + 3840, nextFrame: 0, latencyMs: 0 }, 480);
    assert.ok(Math.abs(e.errorFrames) < 1e-6);
    assert.deepEqual(e.correction, { kind: 'none' });
  });

  it('starts exactly: before the first frame, even a small lateness is skipped at once', () => {
    const s = new Scheduler(options, offsetClock(0), { atHubMs: 0, frame: 0 });
    const d = s.decide({ localNowMs: 2, delayFrames: 0, nextFrame: 0, latencyMs: 0 }, 480);
    assert.deepEqual(d.correction, { kind: 'drop', frames: 96 });
    assert.equal(s.stats.hardResyncs, 0);
  });

  it('hard re-syncs beyond the threshold: drops when late, silence when early', () => {
    const s = new Scheduler(options, offsetClock(0), { atHubMs: 0, frame: 0 });
    s.wrote(480);
    const late = s.decide({ localNowMs: 1000, delayFrames: 0, nextFrame: 48000 - 480, latencyMs: 0 }, 480);
    assert.deepEqual(late.correction, { kind: 'drop', frames: 480 });
    const early = s.decide({ localNowMs: 1000, delayFrames: 0, nextFrame: 48000 + 300, latencyMs: 0 }, 480);
    assert.deepEqual(early.correction, { kind: 'silence', frames: 300 });
    assert.equal(s.stats.hardResyncs, 2);
  });

  it('after a gap (silence written where audio belonged), the audio resumes exactly on its schedule', () => {
    const s = new Scheduler(options, offsetClock(0), { atHubMs: 0, frame: 0 });
    s.wrote(48000);
    // 3 ms late while playing: below the hard re-sync, so normally one frame at a time.
    const drifting = s.decide({ localNowMs: 1003, delayFrames: 0, nextFrame: 48000, latencyMs: 0 }, 480);
    assert.deepEqual(drifting.correction, { kind: 'drop', frames: 1 });
    // The decoder was behind and silence went out instead: the same lateness is skipped at once.
    s.gap();
    const after = s.decide({ localNowMs: 1003, delayFrames: 0, nextFrame: 48000, latencyMs: 0 }, 480);
    assert.deepEqual(after.correction, { kind: 'drop', frames: 144 });
    // Early after a gap: silence up to the frame's instant, exactly.
    const early = s.decide({ localNowMs: 998, delayFrames: 0, nextFrame: 48000, latencyMs: 0 }, 480);
    assert.deepEqual(early.correction, { kind: 'silence', frames: 96 });
    // Once audio is written again, small errors are drift again.
    s.wrote(480);
    const later = s.decide({ localNowMs: 1013, delayFrames: 0, nextFrame: 48480, latencyMs: 0 }, 480);
    assert.equal(later.correction.kind === 'drop' && later.correction.frames > 1, false);
    assert.equal(s.stats.hardResyncs, 0, 'lining up after a gap is not counted as a hard re-sync');
  });

  it('takes the per-node latency offset into account (plays earlier)', () => {
    const s = new Scheduler(options, offsetClock(0), { atHubMs: 0, frame: 0 });
    const d = s.decide({ localNowMs: 1000, delayFrames: 0, nextFrame: 48000, latencyMs: 10 }, 480);
    assert.equal(Math.round(d.errorFrames), 480);
  });

  it('tracks a device running 250 ppm fast with single frames, at most one per 1000 frames, within 2 frames', () => {
    const s = new Scheduler(options, offsetClock(0), { atHubMs: 0, frame: 0 });
    const deviceRate = RATE * (1 + 250e-6);
    let deviceFrames = 0; // frames the device has been given
    let next = 0; // timeline frame written next
    let lastCorrection = -Infinity;
    let worst = 0;
    const buffer = 2400;
    for (let w = 0; w < 20000; w++) {
      // The device keeps `buffer` frames queued; its play position follows its own crystal.
      const localNowMs = ((deviceFrames - buffer) / deviceRate) * 1000;
      const d = s.decide({ localNowMs, delayFrames: buffer, nextFrame: next, latencyMs: 0 }, 480);
      if (w > 10) worst = Math.max(worst, Math.abs(d.errorFrames));
      let written = 480;
      if (d.correction.kind === 'drop') next += d.correction.frames;
      if (d.correction.kind === 'repeat') written += 1;
      if (d.correction.kind !== 'none') {
        assert.ok(deviceFrames - lastCorrection >= 1000, 'corrections spread out');
        lastCorrection = deviceFrames;
      }
      s.wrote(480);
      next += 480;
      deviceFrames += written;
    }
    assert.ok(worst <= 2, `worst error ${worst} frames`);
    assert.ok(s.stats.repeated > 0 && s.stats.dropped === 0, 'a fast device needs frames repeated');
    assert.equal(s.stats.hardResyncs, 0);
  });
});

/**
 * The streaming-start rule (issue 5, item 5): how much of a track's beginning a member
 * holds, in order, before it opens a track it is still downloading. A pure function of
 * the track's size and duration and the download so far, checked on figures whose right
 * answer follows from the definition (playing time ahead, and the rest arriving before
 * the play position reaches it).
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { STREAM_AHEAD_SECONDS, STREAM_RATE_HEADROOM, STREAM_START_BYTES, STREAM_START_MIN_BYTES, STREAM_START_SHARE, streamStartBytes } from '../src/node/player/track-source.js';

const MB = 1e6;

describe('streaming start: the margin is playing time at the measured download rate', () => {
  // The cold-start benchmark's track: 40 MB of 96 kHz / 24-bit FLAC lasting 151 s (265 kB/s).
  const size = 40 * MB;
  const durationMs = 151_000;
  const bitrate = size / (durationMs / 1000);

  it('a fast download opens after a few seconds of audio, far less than the old 10% of the track', () => {
    // 1 MB held after 100 ms: 10 MB/s, far above the bitrate.
    const need = streamStartBytes(size, durationMs, 1 * MB, 100);
    assert.ok(Math.abs(need - STREAM_AHEAD_SECONDS * bitrate) < 1, `need ${need}`);
    assert.ok(need < size * STREAM_START_SHARE);
    // Holding that much opens it; a little less does not.
    assert.ok(need <= 1 * MB);
  });

  it('nothing measured yet (no time passed, or nothing held) asks for the whole track, so the first chunks are awaited', () => {
    assert.equal(streamStartBytes(size, durationMs, 0, 0), size);
    assert.equal(streamStartBytes(size, durationMs, 0, 500), size);
  });

  it('a download slower than the bitrate with headroom waits until the rest can arrive before playback reaches it', () => {
    // Exactly the bitrate: with the headroom, a third of the track must be here first.
    const rate = bitrate; // bytes/s
    const held = 0.5 * MB;
    const need = streamStartBytes(size, durationMs, held, (held / rate) * 1000);
    const expected = size * (1 - 1 / STREAM_RATE_HEADROOM);
    assert.ok(Math.abs(need - expected) < 1, `need ${need}, expected ${expected}`);
    // Check the guarantee itself: from `need` held, at the measured rate, the download
    // stays ahead of playback at HEADROOM times the bitrate up to the end of the track.
    for (let t = 0; t <= (size / bitrate) * 1.01; t += 0.5) {
      const downloaded = Math.min(size, need + rate * t);
      const played = Math.min(size, (bitrate * STREAM_RATE_HEADROOM) * t);
      assert.ok(downloaded + 1 >= played, `at ${t} s: ${downloaded} held, ${played} played`);
    }
  });

  it('the required head shrinks as the measured rate grows, down to the playing-time floor', () => {
    let last = Infinity;
    for (const rate of [0.1, 0.2, 0.3, 0.4, 0.6, 1, 5].map((x) => x * MB)) {
      const need = streamStartBytes(size, durationMs, 1 * MB, (1 * MB * 1000) / rate);
      assert.ok(need <= last, `rate ${rate}: ${need} > ${last}`);
      last = need;
    }
    assert.ok(Math.abs(last - STREAM_AHEAD_SECONDS * bitrate) < 1);
  });

  it('a small or very compressed track still needs its first bytes; never more than the track', () => {
    // 1 MB lasting 200 s (5 kB/s): three seconds are 15 kB, but the floor holds.
    assert.equal(streamStartBytes(1 * MB, 200_000, 0.5 * MB, 10), STREAM_START_MIN_BYTES);
    // 100 kB track: the whole of it.
    assert.equal(streamStartBytes(100_000, 5_000, 50_000, 10), 100_000);
  });

  it('without a known duration the former fixed rule applies: max(1 MiB, 10% of the track)', () => {
    assert.equal(streamStartBytes(size, null, 1 * MB, 10), size * STREAM_START_SHARE);
    assert.equal(streamStartBytes(5 * MB, null, 1 * MB, 10), STREAM_START_BYTES);
    assert.equal(streamStartBytes(500_000, null, 0, 0), 500_000);
  });
});

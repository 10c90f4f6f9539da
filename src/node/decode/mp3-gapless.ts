/**
 * The exact length of an MP3 as its encoder recorded it (Xing/Info frame + LAME tag).
 *
 * ffmpeg trims the encoder delay at the start of a piped MP3 but can only trim the
 * end padding when it can seek the input; we pipe, so we cut the tail ourselves to the
 * length the LAME tag gives. Without the tag the decode is left as ffmpeg gives it.
 */
export interface Mp3Length {
  sampleRate: number;
  /** Samples per channel after removing encoder delay and padding. */
  samples: number;
}

const RATES: Record<number, number[]> = {
  3: [44100, 48000, 32000], // MPEG-1
  2: [22050, 24000, 16000], // MPEG-2
  0: [11025, 12000, 8000], // MPEG-2.5
};

function id3v2Length(b: Buffer): number {
  if (b.length < 10 || b[0] !== 0x49 || b[1] !== 0x44 || b[2] !== 0x33) return 0;
  const size = ((b[6] & 0x7f) << 21) | ((b[7] & 0x7f) << 14) | ((b[8] & 0x7f) << 7) | (b[9] & 0x7f);
  return 10 + size + (b[5] & 0x10 ? 10 : 0);
}

/** Reads the length from the start of an MP3 (the ID3v2 tag plus the first frame); undefined if absent. */
export function mp3Length(head: Buffer): Mp3Length | undefined {
  let at = id3v2Length(head);
  // Allow a little junk between the tag and the first frame.
  const limit = Math.min(head.length - 4, at + 4096);
  while (at < limit && !(head[at] === 0xff && (head[at + 1] & 0xe0) === 0xe0)) at++;
  if (at >= limit) return undefined;
  const version = (head[at + 1] >> 3) & 3;
  const layer = (head[at + 1] >> 1) & 3;
  const rateIndex = (head[at + 2] >> 2) & 3;
  if (layer !== 1 || version === 1 || rateIndex === 3) return undefined; // layer III only
  const sampleRate = RATES[version][rateIndex];
  const mono = (head[at + 3] >> 6) === 3;
  const sideInfo = version === 3 ? (mono ? 17 : 32) : mono ? 9 : 17;
  const xing = at + 4 + sideInfo;
  if (head.length < xing + 120) return undefined;
  const tag = head.toString('latin1', xing, xing + 4);
  if (tag !== 'Xing' && tag !== 'Info') return undefined;
  const flags = head.readUInt32BE(xing + 4);
  if (!(flags & 1)) return undefined;
  const frames = head.readUInt32BE(xing + 8);
  let lame = xing + 8 + 4;
  if (flags & 2) lame += 4;
  if (flags & 4) lame += 100;
  if (flags & 8) lame += 4;
  if (head.length < lame + 24) return undefined;
  // The LAME extension: 9-byte encoder string, then (at +21) 12 bits delay, 12 bits padding.
  const d = lame + 21;
  const delay = (head[d] << 4) | (head[d + 1] >> 4);
  const padding = ((head[d + 1] & 0x0f) << 8) | head[d + 2];
  const samplesPerFrame = version === 3 ? 1152 : 576;
  const samples = frames * samplesPerFrame - delay - padding;
  // The encoder string (LAME…, Lavc…) marks a tag that carries delay and padding.
  if (!/^[A-Za-z][\x20-\x7e]{3}$/.test(head.toString('latin1', lame, lame + 4)) || samples <= 0) return undefined;
  return { sampleRate, samples };
}

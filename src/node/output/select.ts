import type { NodeConfig } from '../../config/schema.js';
import type { Logger } from '../../log.js';
import { AlsaOutput, alsaAvailable } from './alsa.js';
import { NullOutput } from './null.js';
import type { AudioOutput } from './output.js';
import { PulseOutput, pulseAvailable } from './pulse.js';

export interface OutputFormat {
  sampleRate: number;
  channels: number;
}

export interface SelectedOutput {
  /** Opened and ready to write. */
  output: AudioOutput;
  /** Why this one, for the log and the node's state. */
  reason: string;
}

/** Builds (does not open) one kind of output; tests swap these in. */
export type OutputFactory = (format: OutputFormat) => AudioOutput | Promise<AudioOutput>;

export interface SelectOptions {
  log?: Logger;
  /** Overrides per kind (tests, or the playback engineer's measurement output). */
  factories?: Partial<Record<'pulse' | 'alsa' | 'measure', OutputFactory>>;
  /** Where to look for PulseAudio (default: where libpulse would). */
  pulseSocketPath?: string;
}

type OutputSettings = Pick<NodeConfig, 'output' | 'playback' | 'sim'>;

/**
 * Chooses and opens the node's output. `output.kind` auto: PulseAudio/PipeWire if a
 * server answers, else ALSA if a card exists, else the null output with a warning.
 * An explicit kind that cannot open falls back to the null output with an error in the
 * log: a node with no usable device still starts, says so, and keeps its place in the group.
 */
export async function selectOutput(config: OutputSettings, format: OutputFormat, options: SelectOptions = {}): Promise<SelectedOutput> {
  const { kind, device, bufferMs } = config.output;
  const log = options.log;
  const factories = options.factories ?? {};
  const pulse: OutputFactory =
    factories.pulse ?? ((f) => new PulseOutput({ ...f, device, bufferMs, socketPath: options.pulseSocketPath }));
  const alsa: OutputFactory = factories.alsa ?? ((f) => new AlsaOutput({ ...f, device, bufferMs }));

  const tryOpen = async (make: OutputFactory): Promise<AudioOutput | Error> => {
    try {
      const out = await make(format);
      await out.open();
      return out;
    } catch (err) {
      return err as Error;
    }
  };
  const nothing = async (reason: string): Promise<SelectedOutput> => {
    const out = new NullOutput({ ...format, bufferMs, reason, log });
    await out.open();
    return { output: out, reason };
  };

  switch (kind) {
    case 'null':
      return nothing('output.kind is null');
    case 'measure': {
      // Measurement output (owned by the player, see measure.ts): loaded only when asked for.
      const make: OutputFactory =
        factories.measure ??
        (async (f) => {
          const { MeasureOutput } = await import('./measure.js');
          return new MeasureOutput({
            ...f,
            bufferMs,
            rateErrorPpm: config.sim.outputRateErrorPpm,
            measureFile: config.playback.measureFile,
          });
        });
      const out = await make(format);
      await out.open();
      return { output: out, reason: 'output.kind is measure' };
    }
    case 'pulse':
    case 'alsa': {
      const out = await tryOpen(kind === 'pulse' ? pulse : alsa);
      if (!(out instanceof Error)) return { output: out, reason: `output.kind is ${kind}` };
      log?.error({ output: kind, err: out.message }, `the ${kind} output asked for cannot open: ${out.message}`);
      return nothing(`${kind} failed: ${out.message}`);
    }
    case 'auto': {
      const reasons: string[] = [];
      const probe = factories.pulse ? { ok: true as const } : await pulseAvailable(options.pulseSocketPath);
      if (probe.ok) {
        const out = await tryOpen(pulse);
        if (!(out instanceof Error)) return { output: out, reason: 'a PulseAudio/PipeWire server answered' };
        reasons.push(`PulseAudio: ${out.message}`);
      } else {
        reasons.push(`PulseAudio: ${probe.reason}`);
      }
      const card = factories.alsa ? { ok: true as const } : await alsaAvailable();
      if (card.ok) {
        const out = await tryOpen(alsa);
        if (!(out instanceof Error)) return { output: out, reason: 'no sound server; ALSA has a card' };
        reasons.push(`ALSA: ${out.message}`);
      } else {
        reasons.push(`ALSA: ${card.reason}`);
      }
      return nothing(`no audio device found (${reasons.join('; ')})`);
    }
  }
}

import type { PlatformAccessory, Service } from 'homebridge';
import type { GroupState } from '../../protocol/schemas.js';
import type { FireflyPlatform } from '../platform.js';
import { GroupAccessory, type GroupContext } from './group-accessory.js';

/** HomeKit's media states (Current/Target Media State). */
const PLAY = 0;
const PAUSE = 1;
const STOP = 2;

/**
 * The speaker tile: a SmartSpeaker service on an external accessory of category SPEAKER
 * (26), which the user pairs on its own with the bridge's code (HomeKit shows the tile
 * only for an unbridged speaker). Play/pause work from the tile; HomeKit lets volume and
 * mute be set only in scenes and automations.
 */
export class SmartSpeakerAccessory extends GroupAccessory {
  private readonly speaker: Service;

  constructor(platform: FireflyPlatform, accessory: PlatformAccessory<GroupContext>) {
    super(platform, accessory);
    const { Service, Characteristic } = platform.api.hap;
    this.speaker = this.service(Service.SmartSpeaker, this.homeName());
    this.speaker.setCharacteristic(Characteristic.Name, this.homeName());
    this.speaker.setCharacteristic(Characteristic.ConfiguredName, this.homeName());
    this.speaker.getCharacteristic(Characteristic.ConfiguredName).onGet(() => this.homeName(this.current())).onSet((v) => this.rename(v));
    this.speaker.getCharacteristic(Characteristic.CurrentMediaState).onGet(() => mediaState(this.current()));
    this.speaker
      .getCharacteristic(Characteristic.TargetMediaState)
      .onGet(() => Math.min(mediaState(this.current()), STOP))
      .onSet(async (v) => {
        const target = Number(v);
        if (!this.reachable || !this.state) throw this.failure();
        if (target === mediaState(this.state)) return;
        await this.send(target === PLAY ? 'play' : target === PAUSE ? 'pause' : 'stop', {});
      });
    this.speaker
      .getCharacteristic(Characteristic.Volume)
      .onGet(() => this.current().volume)
      .onSet((v) => this.setVolume(Number(v)));
    if (!this.speaker.testCharacteristic(Characteristic.Mute)) this.speaker.addOptionalCharacteristic(Characteristic.Mute);
    this.speaker
      .getCharacteristic(Characteristic.Mute)
      .onGet(() => this.current().playback.muted)
      .onSet(async (v) => {
        if (!this.reachable || !this.state) throw this.failure();
        await this.send('mute', { muted: Boolean(v) });
      });
  }

  protected model(): string {
    return 'Group (speaker)';
  }

  private async setVolume(volume: number): Promise<void> {
    if (!this.reachable || !this.state) throw this.failure();
    const v = Math.max(0, Math.min(100, Math.round(volume)));
    if (v !== this.state.volume) await this.send('group/volume', { volume: v });
  }

  protected push(state: GroupState): void {
    const { Characteristic } = this.platform.api.hap;
    this.speaker.updateCharacteristic(Characteristic.ConfiguredName, this.homeName(state));
    this.speaker.updateCharacteristic(Characteristic.CurrentMediaState, mediaState(state));
    this.speaker.updateCharacteristic(Characteristic.TargetMediaState, mediaState(state));
    this.speaker.updateCharacteristic(Characteristic.Volume, state.volume);
    this.speaker.updateCharacteristic(Characteristic.Mute, state.playback.muted);
  }

  protected pushFailure(): void {
    const { Characteristic } = this.platform.api.hap;
    this.fail(this.speaker, [Characteristic.CurrentMediaState, Characteristic.TargetMediaState, Characteristic.Volume, Characteristic.Mute]);
  }
}

function mediaState(state: GroupState): number {
  return state.playback.state === 'playing' ? PLAY : state.playback.state === 'paused' ? PAUSE : STOP;
}

import type { PlatformAccessory, Service } from 'homebridge';
import type { GroupState, PlaylistSummary } from '../../protocol/schemas.js';
import { homeKitName } from '../names.js';
import type { FireflyPlatform } from '../platform.js';
import { GroupAccessory, type GroupContext } from './group-accessory.js';

/** HomeKit allows a television about this many input sources. */
const MAX_INPUTS = 90;

/**
 * A Television on an external accessory of category TELEVISION (paired on its own with the
 * bridge's code): Active = playing, the inputs are the hub's saved playlists (choosing one
 * plays it on the group), the Control Center remote's play/pause and arrows drive the
 * transport, and its volume buttons the group volume. Home app only; Siri does not switch
 * inputs.
 */
export class TelevisionAccessory extends GroupAccessory {
  private readonly tv: Service;
  private readonly speaker: Service;
  /** The playlist last chosen from Home (the hub's state does not say which playlist a queue came from). */
  private activeInput = 0;

  constructor(platform: FireflyPlatform, accessory: PlatformAccessory<GroupContext>) {
    super(platform, accessory);
    const { Service, Characteristic } = platform.api.hap;
    this.tv = this.service(Service.Television, this.homeName());
    this.tv.setCharacteristic(Characteristic.ConfiguredName, this.homeName());
    this.tv.setCharacteristic(Characteristic.SleepDiscoveryMode, Characteristic.SleepDiscoveryMode.ALWAYS_DISCOVERABLE);
    this.tv.getCharacteristic(Characteristic.ConfiguredName).onGet(() => this.homeName(this.current())).onSet((v) => this.rename(v));
    this.tv
      .getCharacteristic(Characteristic.Active)
      .onGet(() => (this.playing() ? 1 : 0))
      .onSet((v) => this.setPlaying(Number(v) === 1));
    this.tv
      .getCharacteristic(Characteristic.ActiveIdentifier)
      .onGet(() => (this.current(), this.activeInput))
      .onSet(async (v) => {
        const playlistId = Number(v);
        if (!this.reachable || !this.state) throw this.failure();
        if (!platform.link!.playlists.some((p) => p.playlistId === playlistId)) return;
        if (await this.send('play', { playlistId })) this.activeInput = playlistId;
      });
    this.tv.getCharacteristic(Characteristic.RemoteKey).onSet(async (v) => {
      const key = Number(v);
      const K = Characteristic.RemoteKey;
      if (key === K.PLAY_PAUSE) await this.setPlaying(!this.playing());
      else if (key === K.ARROW_RIGHT || key === K.FAST_FORWARD) await this.send('next', {});
      else if (key === K.ARROW_LEFT || key === K.REWIND) await this.send('previous', {});
    });
    this.speaker = this.service(Service.TelevisionSpeaker, `${this.homeName()} Volume`);
    this.speaker.setCharacteristic(Characteristic.VolumeControlType, Characteristic.VolumeControlType.ABSOLUTE);
    this.speaker
      .getCharacteristic(Characteristic.Mute)
      .onGet(() => this.current().playback.muted)
      .onSet((v) => this.send('mute', { muted: Boolean(v) }));
    this.speaker
      .getCharacteristic(Characteristic.Volume)
      .onGet(() => this.current().volume)
      .onSet((v) => this.send('group/volume', { volume: Math.max(0, Math.min(100, Math.round(Number(v)))) }));
    this.speaker.getCharacteristic(Characteristic.VolumeSelector).onSet(async (v) => {
      const state = this.current();
      const step = Number(v) === Characteristic.VolumeSelector.INCREMENT ? 5 : -5;
      await this.send('group/volume', { volume: Math.max(0, Math.min(100, state.volume + step)) });
    });
    this.tv.addLinkedService(this.speaker);
    this.setInputs(platform.link?.playlists ?? []);
  }

  protected model(): string {
    return 'Group (television)';
  }

  /** One InputSource per saved playlist; inputs of deleted playlists go. */
  setInputs(playlists: readonly PlaylistSummary[]): void {
    const { Service, Characteristic } = this.platform.api.hap;
    const wanted = new Map(playlists.slice(0, MAX_INPUTS).map((p) => [`playlist-${p.playlistId}`, p]));
    for (const s of [...this.accessory.services]) {
      if (s.UUID !== Service.InputSource.UUID || (s.subtype && wanted.has(s.subtype))) continue;
      this.tv.removeLinkedService(s);
      this.accessory.removeService(s);
    }
    for (const [subtype, p] of wanted) {
      const name = homeKitName(p.name, `Playlist ${p.playlistId}`);
      let input = this.accessory.getServiceById(Service.InputSource, subtype);
      if (!input) {
        input = this.accessory.addService(Service.InputSource, name, subtype);
        input
          .setCharacteristic(Characteristic.Identifier, p.playlistId)
          .setCharacteristic(Characteristic.IsConfigured, Characteristic.IsConfigured.CONFIGURED)
          .setCharacteristic(Characteristic.InputSourceType, Characteristic.InputSourceType.OTHER)
          .setCharacteristic(Characteristic.CurrentVisibilityState, Characteristic.CurrentVisibilityState.SHOWN);
        this.tv.addLinkedService(input);
      }
      input.updateCharacteristic(Characteristic.ConfiguredName, name);
      input.updateCharacteristic(Characteristic.Name, name);
    }
  }

  protected push(state: GroupState): void {
    const { Characteristic } = this.platform.api.hap;
    this.tv.updateCharacteristic(Characteristic.ConfiguredName, this.homeName(state));
    this.tv.updateCharacteristic(Characteristic.Active, state.playback.state === 'playing' ? 1 : 0);
    this.tv.updateCharacteristic(Characteristic.ActiveIdentifier, this.activeInput);
    this.speaker.updateCharacteristic(Characteristic.Volume, state.volume);
    this.speaker.updateCharacteristic(Characteristic.Mute, state.playback.muted);
  }

  protected pushFailure(): void {
    const { Characteristic } = this.platform.api.hap;
    this.fail(this.tv, [Characteristic.Active, Characteristic.ActiveIdentifier]);
    this.fail(this.speaker, [Characteristic.Volume, Characteristic.Mute]);
  }
}

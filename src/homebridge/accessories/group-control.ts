import type { Characteristic, PlatformAccessory, Service, WithUUID } from 'homebridge';
import type { GroupState } from '../../protocol/schemas.js';
import type { FireflyPlatform } from '../platform.js';
import { GroupAccessory, type GroupContext } from './group-accessory.js';

/**
 * The bridged accessory of a group: one primary service whose On is "playing" and whose
 * percentage (when the kind has one) is the group volume, the two controls Home and Siri
 * understand ("turn on the Kitchen", "set the Kitchen to 30%"). Fan, Lightbulb and Switch
 * differ only in the service and the percentage characteristic.
 */
export abstract class GroupControl extends GroupAccessory {
  protected readonly control: Service;

  constructor(platform: FireflyPlatform, accessory: PlatformAccessory<GroupContext>) {
    super(platform, accessory);
    const { Service, Characteristic } = platform.api.hap;
    this.keepOnly([this.serviceType()], [Service.Fan, Service.Lightbulb, Service.Switch]);
    this.control = this.service(this.serviceType(), this.homeName());
    this.control.setPrimaryService(true);
    this.control.setCharacteristic(Characteristic.Name, this.homeName());
    if (!this.control.testCharacteristic(Characteristic.ConfiguredName)) this.control.addOptionalCharacteristic(Characteristic.ConfiguredName);
    this.control.getCharacteristic(Characteristic.ConfiguredName).onGet(() => this.homeName(this.current())).onSet((v) => this.rename(v));
    this.control.getCharacteristic(Characteristic.On).onGet(() => this.playing()).onSet((v) => this.setPlaying(Boolean(v)));
    const level = this.levelType();
    if (level) {
      this.control
        .getCharacteristic(level)
        .onGet(() => this.current().volume)
        .onSet((v) => this.setLevel(Number(v)));
    }
  }

  protected abstract serviceType(): WithUUID<typeof Service>;
  /** The percentage that is the group volume, if this kind has one. */
  protected abstract levelType(): WithUUID<new () => Characteristic> | undefined;

  protected push(state: GroupState): void {
    const { Characteristic } = this.platform.api.hap;
    const name = this.homeName(state);
    this.control.updateCharacteristic(Characteristic.Name, name);
    this.control.updateCharacteristic(Characteristic.ConfiguredName, name);
    this.control.updateCharacteristic(Characteristic.On, state.playback.state === 'playing');
    const level = this.levelType();
    if (level) this.control.updateCharacteristic(level, state.volume);
  }

  protected pushFailure(): void {
    const { Characteristic } = this.platform.api.hap;
    const level = this.levelType();
    this.fail(this.control, [Characteristic.On, ...(level ? [level] : [])]);
  }
}

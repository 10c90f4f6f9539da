import type { Characteristic, CharacteristicValue, PlatformAccessory, Service, WithUUID } from 'homebridge';
import type { GroupState } from '../../protocol/schemas.js';
import type { CommandName } from '../../protocol/topics.js';
import { SOFTWARE_VERSION } from '../../version.js';
import { HubRefused } from '../hub-link.js';
import { homeKitName } from '../names.js';
import type { FireflyPlatform } from '../platform.js';

/** What every accessory kept for a group stores in its context (saved in Homebridge's cache). */
export interface GroupContext {
  groupId: number;
  topicPrefix: string;
  /** Which class drives it (bridged accessories only). */
  accessoryType?: string;
}

type ServiceType = WithUUID<typeof Service>;
type CharacteristicType = WithUUID<new () => Characteristic>;

/**
 * What all accessories of one Firefly group share: the group's latest state from the hub,
 * the "No Response" rule (every read and every pushed value is a HapStatusError
 * SERVICE_COMMUNICATION_FAILURE while the hub is unreachable or the group gone, never a
 * stale value), commands with the hub's refusals logged, and the naming rule.
 */
export abstract class GroupAccessory {
  protected state?: GroupState;
  protected reachable = false;

  constructor(
    protected readonly platform: FireflyPlatform,
    readonly accessory: PlatformAccessory<GroupContext>,
  ) {
    const { Service, Characteristic } = platform.api.hap;
    accessory
      .getService(Service.AccessoryInformation)!
      .setCharacteristic(Characteristic.Manufacturer, 'Firefly')
      .setCharacteristic(Characteristic.Model, this.model())
      .setCharacteristic(Characteristic.SerialNumber, `${accessory.context.topicPrefix}-group-${accessory.context.groupId}`)
      .setCharacteristic(Characteristic.FirmwareRevision, SOFTWARE_VERSION.replace(/[^0-9.]/g, '') || '0.0.0');
  }

  get groupId(): number {
    return this.accessory.context.groupId;
  }

  protected abstract model(): string;

  /** Pushes the group's state (undefined: the group is gone) and the hub's reachability to HomeKit. */
  update(state: GroupState | undefined, reachable: boolean): void {
    this.state = state;
    this.reachable = reachable;
    if (state && reachable) {
      const { Service, Characteristic } = this.platform.api.hap;
      this.accessory.getService(Service.AccessoryInformation)!.updateCharacteristic(Characteristic.Name, this.homeName(state));
      this.push(state);
    } else {
      this.pushFailure();
    }
  }

  /** Sets every characteristic from the group's state with updateCharacteristic. */
  protected abstract push(state: GroupState): void;
  /** Marks every characteristic failed (the Home app shows "No Response"). */
  protected abstract pushFailure(): void;

  /** The HomeKit-safe name for the group. */
  homeName(state: GroupState | undefined = this.state): string {
    return homeKitName(state?.name ?? this.accessory.displayName, `Group ${this.groupId}`);
  }

  protected failure(): Error {
    const { HapStatusError, HAPStatus } = this.platform.api.hap;
    return new HapStatusError(HAPStatus.SERVICE_COMMUNICATION_FAILURE);
  }

  /** The state to answer a read with, or the communication failure HomeKit shows as "No Response". */
  protected current(): GroupState {
    if (!this.reachable || !this.state) throw this.failure();
    return this.state;
  }

  protected playing(): boolean {
    return this.current().playback.state === 'playing';
  }

  /**
   * Sends a command for this group. Unreachable hub: HomeKit gets the communication
   * failure. Refused (an empty queue, say): logged, and the real state pushed back so the
   * tile does not claim what did not happen. Resolves to whether the hub did it.
   */
  protected async send<N extends CommandName>(name: N, body: Record<string, unknown>): Promise<boolean> {
    try {
      await this.platform.link!.command(name, { groupId: this.groupId, ...body } as never);
      return true;
    } catch (err) {
      if (err instanceof HubRefused) {
        this.platform.log.warn(`${this.homeName()}: ${err.message}`);
        setTimeout(() => this.update(this.state, this.reachable), 50).unref();
        return false;
      }
      this.platform.log.warn(`${this.homeName()}: ${(err as Error).message}`);
      throw this.failure();
    }
  }

  /** On = play (the queue, or resume), off = pause. */
  protected async setPlaying(on: boolean): Promise<void> {
    if (!this.reachable || !this.state) throw this.failure();
    if (on === (this.state.playback.state === 'playing')) return;
    await this.send(on ? 'play' : 'pause', {});
  }

  /** A percentage from Home or Siri sets the group volume; 0 pauses and keeps the volume (else "on" would play silence). */
  protected async setLevel(level: number): Promise<void> {
    if (!this.reachable || !this.state) throw this.failure();
    const volume = Math.max(0, Math.min(100, Math.round(level)));
    if (volume === 0) return this.setPlaying(false);
    if (volume !== this.state.volume) await this.send('group/volume', { volume });
  }

  /** A name typed in the Home app renames the group on the hub (so every other control shows it too). */
  protected async rename(value: CharacteristicValue): Promise<void> {
    if (!this.reachable || !this.state) throw this.failure();
    const name = String(value).trim();
    if (name.length > 0 && name !== this.state.name && name !== this.homeName()) await this.send('group/rename', { name });
  }

  /** Removes services this class does not use (the accessory type changed in the settings). */
  protected keepOnly(types: ServiceType[], among: ServiceType[]): void {
    for (const type of among) {
      if (types.some((t) => t.UUID === type.UUID)) continue;
      const old = this.accessory.getService(type);
      if (old) this.accessory.removeService(old);
    }
  }

  protected service(type: ServiceType, name: string, subtype?: string): Service {
    const found = subtype ? this.accessory.getServiceById(type, subtype) : this.accessory.getService(type);
    return found ?? this.accessory.addService(new type(name, subtype as string));
  }

  /** Pushes the failure to each of these characteristics. */
  protected fail(service: Service, characteristics: CharacteristicType[]): void {
    for (const c of characteristics) service.updateCharacteristic(c, this.failure() as never);
  }
}

import type { API, DynamicPlatformPlugin, Logging, PlatformAccessory, PlatformConfig } from 'homebridge';
import type { GroupState } from '../protocol/schemas.js';
import { checkPluginConfig, exposureOf, type AccessoryType, type PluginConfig } from './config.js';
import { HubLink, redactUrl } from './hub-link.js';
import { homeKitName } from './names.js';
import { PLATFORM_NAME, PLUGIN_NAME } from './settings.js';
import type { GroupAccessory, GroupContext } from './accessories/group-accessory.js';
import { FanAccessory } from './accessories/fan.js';
import { LightbulbAccessory } from './accessories/lightbulb.js';
import { SwitchAccessory } from './accessories/switch.js';
import { SmartSpeakerAccessory } from './accessories/smart-speaker.js';
import { TelevisionAccessory } from './accessories/television.js';
import type { EmbeddedHub } from './embedded-hub.js';

const CONTROL_CLASSES = { fan: FanAccessory, lightbulb: LightbulbAccessory, switch: SwitchAccessory } as const;

/**
 * The Firefly dynamic platform. Every Firefly group becomes one bridged accessory (a Fan
 * by default), and optionally an external SmartSpeaker and an external Television.
 * Bridged accessories come back from Homebridge's cache through `configureAccessory` and
 * are reconciled with the hub's group list once the hub has sent it: new groups are
 * added, renamed ones renamed, deleted ones removed. Accessory UUIDs come from the topic
 * prefix and the group's stable id, never its name.
 */
export class FireflyPlatform implements DynamicPlatformPlugin {
  readonly config?: PluginConfig;
  link?: HubLink;
  private embedded?: EmbeddedHub;
  /** The embedded hub's start while it runs: a shutdown meanwhile waits for it, then stops the hub. */
  private embeddedStarting?: Promise<string>;
  /** Bridged accessories by UUID, restored from the cache or created here. */
  private readonly accessories = new Map<string, PlatformAccessory<GroupContext>>();
  private readonly controls = new Map<string, GroupAccessory>();
  /** External accessories published in this run (Homebridge cannot unpublish them until a restart). */
  private readonly externals = new Map<string, GroupAccessory>();
  private stopping = false;

  constructor(
    readonly log: Logging,
    rawConfig: PlatformConfig,
    readonly api: API,
  ) {
    const checked = checkPluginConfig(rawConfig);
    if (!checked.ok) {
      this.log.error(`The Firefly settings cannot be used, so Firefly stays off until they are fixed (cached accessories are kept and show "No Response"):`);
      for (const p of checked.problems) this.log.error(`  ${p}`);
    } else {
      this.config = checked.config;
      for (const key of checked.unknownKeys) this.log.warn(`ignoring unknown setting ${JSON.stringify(key)} in the Firefly platform block`);
    }
    this.api.on('didFinishLaunching', () => {
      this.start().catch((err: Error) => this.log.error(`Firefly could not start: ${err.message}`));
    });
    this.api.on('shutdown', () => {
      void this.stop();
    });
  }

  /** Homebridge hands back each cached accessory before didFinishLaunching. */
  configureAccessory(accessory: PlatformAccessory): void {
    this.accessories.set(accessory.UUID, accessory as PlatformAccessory<GroupContext>);
  }

  private async start(): Promise<void> {
    // Until the hub says otherwise, every cached accessory answers "No Response", never a stale value.
    for (const accessory of this.accessories.values()) this.control(accessory);
    const config = this.config;
    if (!config) return;
    let url: string;
    if (config.mode === 'embedded') {
      const storage = this.api.user.storagePath();
      // Loaded only here, so external mode never loads the hub (nor SQLite).
      const { EmbeddedHub, embeddedHubConfig } = await import('./embedded-hub.js');
      let hubConfig;
      try {
        hubConfig = embeddedHubConfig(config, storage);
      } catch (err) {
        this.log.error((err as Error).message);
        return;
      }
      this.embedded = new EmbeddedHub(hubConfig, this.log);
      this.log.info(`starting the embedded Firefly hub (library ${hubConfig.library.join(', ')}, data in ${hubConfig.dataDir})`);
      try {
        this.embeddedStarting = this.embedded.start();
        url = await this.embeddedStarting;
      } catch (err) {
        this.embedded = undefined;
        this.log.error(`the embedded Firefly hub cannot start: ${(err as Error).message}`);
        return;
      } finally {
        this.embeddedStarting = undefined;
      }
      // Homebridge began shutting down while the hub started: stop() is waiting for it.
      if (this.stopping) return;
    } else if (config.mqttUrl) {
      url = config.mqttUrl;
    } else {
      this.log.warn(
        'Firefly is not configured yet: set "mqttUrl" to the broker of your Firefly hub (for example "mqtt://192.168.1.20:1883", the hub\'s address with port 1883), ' +
          'or choose "mode": "embedded" with "embedded": {"library": ["/path/to/music"]} to run the hub inside Homebridge. The Homebridge UI\'s Firefly settings have both.',
      );
      return;
    }
    const link = new HubLink({ url, username: config.mqttUsername, password: config.mqttPassword, topicPrefix: config.topicPrefix }, this.log);
    this.link = link;
    link.on('groups', () => this.reconcile());
    link.on('reachable', () => this.reconcile());
    link.on('playlists', (playlists) => {
      for (const e of this.externals.values()) if (e instanceof TelevisionAccessory) e.setInputs(playlists);
    });
    this.log.info(`connecting to the Firefly hub's broker at ${redactUrl(url)} (topic prefix ${config.topicPrefix})`);
    link.start();
  }

  private async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const link = this.link;
    this.link = undefined;
    await link?.stop();
    await this.embeddedStarting?.catch(() => undefined);
    const embedded = this.embedded;
    this.embedded = undefined;
    if (embedded) {
      await embedded.stop().catch((err: Error) => this.log.warn(`the embedded hub did not stop cleanly: ${err.message}`));
      this.log.info('the embedded Firefly hub stopped');
    }
  }

  private uuidFor(groupId: number, what: 'control' | 'speaker' | 'television'): string {
    const prefix = this.config!.topicPrefix;
    return this.api.hap.uuid.generate(what === 'control' ? `${PLUGIN_NAME}:${prefix}:group:${groupId}` : `${PLUGIN_NAME}:${prefix}:group:${groupId}:${what}`);
  }

  /** The handler of a bridged accessory, made (again) when missing or of another type. */
  private control(accessory: PlatformAccessory<GroupContext>, type?: AccessoryType): GroupAccessory {
    const cached = accessory.context.accessoryType;
    const wanted: AccessoryType = type ?? (cached !== undefined && cached in CONTROL_CLASSES ? (cached as AccessoryType) : 'fan');
    const existing = this.controls.get(accessory.UUID);
    if (existing && accessory.context.accessoryType === wanted) return existing;
    accessory.context.accessoryType = wanted;
    const handler = new CONTROL_CLASSES[wanted](this, accessory);
    this.controls.set(accessory.UUID, handler);
    handler.update(undefined, false);
    return handler;
  }

  /** Brings HomeKit in line with the hub's groups and pushes every state. */
  private reconcile(): void {
    const link = this.link;
    if (!link || this.stopping) return;
    const reachable = link.reachable;
    if (!reachable || !link.groupsKnown) {
      // Keep every accessory (the hub may come back, its list may be on its way); say "No Response" meanwhile.
      for (const h of [...this.controls.values(), ...this.externals.values()]) h.update(undefined, false);
      return;
    }
    const config = this.config!;
    const wanted = new Set<string>();
    const toRegister: PlatformAccessory<GroupContext>[] = [];
    const toUpdate: PlatformAccessory<GroupContext>[] = [];
    for (const state of link.groups.values()) {
      const exposure = exposureOf(config, state);
      if (exposure.accessoryType !== 'none') {
        const uuid = this.uuidFor(state.groupId, 'control');
        wanted.add(uuid);
        let accessory = this.accessories.get(uuid);
        const before = accessory?.context.accessoryType;
        if (!accessory) {
          accessory = new this.api.platformAccessory<GroupContext>(this.nameOf(state), uuid, this.categoryOf(exposure.accessoryType));
          accessory.context = { groupId: state.groupId, topicPrefix: config.topicPrefix, accessoryType: exposure.accessoryType };
          this.accessories.set(uuid, accessory);
          toRegister.push(accessory);
          this.log.info(`adding ${this.nameOf(state)} (group ${state.groupId}) as a ${exposure.accessoryType}`);
        }
        const handler = this.control(accessory, exposure.accessoryType);
        const name = handler.homeName(state);
        if (!toRegister.includes(accessory) && (accessory.displayName !== name || before !== exposure.accessoryType)) {
          if (accessory.displayName !== name) this.log.info(`group ${state.groupId} is now called ${name}`);
          accessory.displayName = name;
          toUpdate.push(accessory);
        }
        handler.update(state, true);
      }
      if (exposure.smartSpeaker) this.external(state, 'speaker');
      if (exposure.television) this.external(state, 'television');
    }
    if (toRegister.length) this.api.registerPlatformAccessories(PLUGIN_NAME, PLATFORM_NAME, toRegister);
    if (toUpdate.length) this.api.updatePlatformAccessories(toUpdate);
    const stale = [...this.accessories.values()].filter((a) => !wanted.has(a.UUID));
    for (const a of stale) {
      const why = a.context.groupId !== undefined && link.groups.has(a.context.groupId) ? 'left out of HomeKit by the settings' : 'no longer on the hub';
      this.log.info(`removing ${a.displayName} (group ${a.context.groupId ?? '?'}): ${why}`);
      this.accessories.delete(a.UUID);
      this.controls.delete(a.UUID);
    }
    if (stale.length) this.api.unregisterPlatformAccessories(PLUGIN_NAME, PLATFORM_NAME, stale);
    for (const handler of this.externals.values()) handler.update(link.groups.get(handler.groupId), true);
  }

  private categoryOf(type: AccessoryType): number {
    const { Categories } = this.api.hap;
    return type === 'lightbulb' ? Categories.LIGHTBULB : type === 'switch' ? Categories.SWITCH : Categories.FAN;
  }

  private nameOf(state: GroupState): string {
    return homeKitName(state.name, `Group ${state.groupId}`);
  }

  /** Publishes a group's external SmartSpeaker or Television once per run (paired separately with the bridge's code). */
  private external(state: GroupState, what: 'speaker' | 'television'): void {
    const uuid = this.uuidFor(state.groupId, what);
    if (this.externals.has(uuid)) return;
    const { Categories } = this.api.hap;
    const name = this.nameOf(state);
    const accessory = new this.api.platformAccessory<GroupContext>(name, uuid, what === 'speaker' ? Categories.SPEAKER : Categories.TELEVISION);
    accessory.context = { groupId: state.groupId, topicPrefix: this.config!.topicPrefix };
    const handler = what === 'speaker' ? new SmartSpeakerAccessory(this, accessory) : new TelevisionAccessory(this, accessory);
    this.externals.set(uuid, handler);
    handler.update(state, true);
    this.log.info(`publishing ${name} as an external ${what === 'speaker' ? 'speaker' : 'television'}: add it in the Home app on its own, with the bridge's setup code`);
    this.api.publishExternalAccessories(PLUGIN_NAME, [accessory]);
  }
}

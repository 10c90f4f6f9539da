import type { LibraryAnnouncement } from '../../src/protocol/schemas.js';
import type { ControlChannel } from './channel.js';

/** The source of library versions (the hub's Library). */
export interface VersionSource {
  on(event: 'version', listener: (version: number) => void): unknown;
  off(event: 'version', listener: (version: number) => void): unknown;
}

/**
 * Tells nodes the library moved on: a retained announcement of the current version,
 * published at start and after changes. A burst of changes (a folder being indexed)
 * makes one announcement per `intervalMs`, not one per file.
 */
export class LibraryAnnouncer {
  private timer?: NodeJS.Timeout;
  private announced = -1;
  private latest: number;

  constructor(
    private readonly channel: ControlChannel,
    private readonly library: VersionSource,
    currentVersion: number,
    private readonly intervalMs = 500,
  ) {
    this.latest = currentVersion;
  }

  async start(): Promise<void> {
    this.library.on('version', this.onVersion);
    this.announce();
  }

  async stop(): Promise<void> {
    this.library.off('version', this.onVersion);
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private readonly onVersion = (version: number) => {
    this.latest = Math.max(this.latest, version);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.announce();
    }, this.intervalMs);
  };

  private announce(): void {
    if (this.latest === this.announced) return;
    this.announced = this.latest;
    const message: LibraryAnnouncement = { version: this.latest, at: Date.now() };
    this.channel.publish(this.channel.topics.library, message, { retain: true });
  }
}

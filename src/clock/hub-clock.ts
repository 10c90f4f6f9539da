/**
 * The mapping between a node's LocalClock and the hub's clock (the timebase every
 * schedule is written in), as the node's clock synchronisation currently estimates it.
 * Implemented by the clock-sync module; read by the player on every write.
 */
export interface HubClock {
  /** Hub time (ms) at a local time (ms). */
  toHub(localMs: number): number;
  /** Local time (ms) at a hub time (ms). */
  toLocal(hubMs: number): number;
  /** True once enough exchanges were made to trust the mapping. */
  readonly synced: boolean;
  /** Estimated error bound of the mapping (ms); Infinity until synced. */
  readonly errorMs: number;
}

import { setFlagsFromString } from 'node:v8';

/**
 * Lets external memory (Buffers) count toward V8's ordinary heap limit instead of its
 * fixed 64 MiB allowance per collection. Every chunk a node receives or serves allocates
 * a few 64 KiB Buffers (HTTP/2 frames, gRPC framing, protobuf encoding, the store read):
 * about 1 GiB per 200 MiB fetched. Under the fixed allowance that started a full
 * mark-compact of the whole heap twice a second; V8's GC threads then took more CPU than
 * the transfer itself (perf, 8 nodes on 2 cores: 39% of all CPU time in V8 worker
 * threads). With this, a node made 13 full collections instead of 43 for the same
 * download, and the eight nodes used 26% less CPU (docs/swarm.md). The cost: peak
 * RSS about 80 MiB higher while a download runs.
 *
 * The flag is in Node.js 24's V8 (13.6), not in Node.js 22's (12.4), which keeps the default. The
 * processes the `firefly` command starts set it; an embedded hub inside Homebridge does
 * not change its host's runtime.
 */
export function tuneGarbageCollector(): boolean {
  const major = Number(process.versions.node.split('.')[0]);
  if (!(major >= 24)) return false;
  setFlagsFromString('--external-memory-accounted-in-global-limit');
  return true;
}

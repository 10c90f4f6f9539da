import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { REPEAT_MODES } from '../../src/protocol/schemas.js';
import type { CommandName } from '../../src/protocol/topics.js';
import type { EntryRow } from '../library/catalogue.js';
import type { Hub } from '../hub.js';
import type { ApiEntry } from './api-types.js';
import { ApiError } from './errors.js';
import type { LiveEvents } from './events.js';
import { storeUpload, type StoredUpload } from './uploads.js';

/**
 * The REST API under /api. Every action runs a hub command through
 * `hub.commands.invoke`, with the same schema and handler as the MQTT topic, so REST,
 * MQTT and the page behave alike. docs/web.md lists the routes; /api/openapi.json
 * describes them.
 */

const id = z.coerce.number().int().min(1).max(2 ** 31 - 1);
const volume = z.int().min(0).max(100);
const groupParams = z.strictObject({ groupId: id });
const nodeParams = z.strictObject({ nodeId: id });
const entryParams = z.strictObject({ entryId: id });
const itemParams = z.strictObject({ groupId: id, itemId: id });
const name = z.string().min(1).max(64);
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp', 'image/bmp']);

export function apiEntry(e: EntryRow): ApiEntry {
  const m = e.metadata;
  return {
    entryId: e.id,
    path: e.path,
    status: e.status,
    error: e.error,
    format: e.format,
    size: e.size,
    title: m.title ?? null,
    artist: m.artist ?? null,
    album: m.album ?? null,
    albumArtist: m.albumArtist ?? null,
    trackNo: m.trackNo ?? null,
    discNo: m.discNo ?? null,
    year: m.year ?? null,
    durationMs: m.durationSeconds !== undefined ? Math.round(m.durationSeconds * 1000) : null,
    cover: Boolean(m.coverHash),
  };
}

export interface ApiOptions {
  uploadMaxBytes: number;
  uploadFolder: string;
}

export async function apiRoutes(root: FastifyInstance, hub: Hub, live: LiveEvents, options: ApiOptions): Promise<void> {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const run = (command: CommandName, payload: Record<string, unknown>) => hub.commands.invoke(command, payload);
  const group = (groupId: number) => {
    const g = hub.groups.state(groupId);
    if (!g) throw new ApiError('not-found', `no group with id ${groupId}`);
    return g;
  };

  // --- state ------------------------------------------------------------------------------
  app.get('/state', { schema: { tags: ['state'], summary: 'Everything the page shows: groups, nodes, library, playlists, uploads' } }, async () => ({
    ...live.snapshot(),
    limits: { uploadMaxBytes: options.uploadMaxBytes },
  }));
  app.get('/events', { schema: { tags: ['state'], summary: 'Live updates (server-sent events): snapshot, groups, nodes, library, playlists, heartbeat, upload, node-event' } }, (request, reply) =>
    live.serve(request, reply),
  );

  // --- groups -----------------------------------------------------------------------------
  app.get('/groups', { schema: { tags: ['groups'], summary: 'Every group with its playback, queue and members' } }, async () => ({ groups: hub.groups.list() }));
  app.get('/groups/:groupId', { schema: { tags: ['groups'], params: groupParams } }, async (req) => group(req.params.groupId));
  app.post(
    '/groups',
    { schema: { tags: ['groups'], summary: 'Create a group of nodes (nodes move out of their old group)', body: z.strictObject({ name, members: z.array(id).max(256).optional() }) } },
    async (req, reply) => reply.status(201).send(run('group/create', req.body)),
  );
  app.patch(
    '/groups/:groupId',
    {
      schema: {
        tags: ['groups'],
        summary: 'Change a group: name, volume, mute, shuffle, repeat, and its members (the whole set)',
        params: groupParams,
        body: z
          .strictObject({ name: name.optional(), volume: volume.optional(), muted: z.boolean().optional(), shuffle: z.boolean().optional(), repeat: z.enum(REPEAT_MODES).optional(), members: z.array(id).max(256).optional() })
          .refine((b) => Object.keys(b).length > 0, 'give at least one of name, volume, muted, shuffle, repeat, members'),
      },
    },
    async (req) => {
      const { groupId } = req.params;
      const b = req.body;
      const current = group(groupId);
      // Check every member first: a bad id must leave the group as it was.
      for (const nodeId of b.members ?? []) if (!hub.registry.info(nodeId)) throw new ApiError('not-found', `no node with id ${nodeId} (members)`);
      if (b.name !== undefined && b.name !== current.name) run('group/rename', { groupId, name: b.name });
      if (b.volume !== undefined) run('group/volume', { groupId, volume: b.volume });
      if (b.muted !== undefined) run('mute', { groupId, muted: b.muted });
      if (b.shuffle !== undefined) run('shuffle', { groupId, on: b.shuffle });
      if (b.repeat !== undefined) run('repeat', { groupId, mode: b.repeat });
      if (b.members) {
        const want = new Set(b.members);
        for (const m of current.members) if (!want.has(m.nodeId)) run('group/remove', { groupId, nodeId: m.nodeId });
        const have = new Set(current.members.map((m) => m.nodeId));
        for (const nodeId of want) if (!have.has(nodeId)) run('group/add', { groupId, nodeId });
      }
      return group(groupId);
    },
  );
  app.delete('/groups/:groupId', { schema: { tags: ['groups'], params: groupParams } }, async (req) => run('group/delete', { groupId: req.params.groupId }));

  // --- transport --------------------------------------------------------------------------
  app.post(
    '/groups/:groupId/play',
    {
      schema: {
        tags: ['playback'],
        summary: 'Play: without a body, the queue (resume if paused); with entries or a playlist, replace the queue and play its first track',
        params: groupParams,
        body: z.strictObject({ entryId: id.optional(), entryIds: z.array(id).min(1).max(1000).optional(), playlistId: id.optional() }).nullish(),
      },
    },
    async (req) => run('play', { groupId: req.params.groupId, ...(req.body ?? {}) }),
  );
  for (const command of ['pause', 'resume', 'stop', 'next', 'previous'] as const) {
    app.post(`/groups/:groupId/${command}`, { schema: { tags: ['playback'], params: groupParams } }, async (req) => run(command, { groupId: req.params.groupId }));
  }
  app.post(
    '/groups/:groupId/seek',
    { schema: { tags: ['playback'], summary: 'Seek the current track to a position in seconds', params: groupParams, body: z.strictObject({ seconds: z.number().nonnegative().max(24 * 3600) }) } },
    async (req) => run('seek', { groupId: req.params.groupId, seconds: req.body.seconds }),
  );

  // --- queue ------------------------------------------------------------------------------
  app.post(
    '/groups/:groupId/queue',
    { schema: { tags: ['queue'], summary: 'Add entries to the queue (at the end, or before index `at`)', params: groupParams, body: z.strictObject({ entryIds: z.array(id).min(1).max(1000), at: z.int().min(0).optional() }) } },
    async (req) => run('queue/add', { groupId: req.params.groupId, ...req.body }),
  );
  app.delete('/groups/:groupId/queue', { schema: { tags: ['queue'], summary: 'Clear the queue (stops playback)', params: groupParams } }, async (req) => run('queue/clear', { groupId: req.params.groupId }));
  app.delete('/groups/:groupId/queue/:itemId', { schema: { tags: ['queue'], params: itemParams } }, async (req) => run('queue/remove', req.params));
  app.post(
    '/groups/:groupId/queue/:itemId/move',
    { schema: { tags: ['queue'], summary: 'Move a queue item to index `to`', params: itemParams, body: z.strictObject({ to: z.int().min(0) }) } },
    async (req) => run('queue/move', { ...req.params, to: req.body.to }),
  );

  // --- nodes ------------------------------------------------------------------------------
  app.get('/nodes', { schema: { tags: ['nodes'], summary: 'Every node: online state, group, volume, clock quality, downloads' } }, async () => ({ nodes: hub.registry.list() }));
  app.get('/nodes/:nodeId', { schema: { tags: ['nodes'], params: nodeParams } }, async (req) => {
    const n = hub.registry.info(req.params.nodeId);
    if (!n) throw new ApiError('not-found', `no node with id ${req.params.nodeId}`);
    return n;
  });
  app.patch(
    '/nodes/:nodeId',
    {
      schema: {
        tags: ['nodes'],
        summary: "Change a node's volume, mute or latency offset",
        params: nodeParams,
        body: z
          .strictObject({ volume: volume.optional(), muted: z.boolean().optional(), latencyMs: z.number().min(-1000).max(5000).optional() })
          .refine((b) => Object.keys(b).length > 0, 'give at least one of volume, muted, latencyMs'),
      },
    },
    async (req) => {
      const { nodeId } = req.params;
      if (!hub.registry.info(nodeId)) throw new ApiError('not-found', `no node with id ${nodeId}`);
      if (req.body.volume !== undefined) run('node/volume', { nodeId, volume: req.body.volume });
      if (req.body.muted !== undefined) run('mute', { nodeId, muted: req.body.muted });
      if (req.body.latencyMs !== undefined) run('node/latency', { nodeId, latencyMs: req.body.latencyMs });
      return hub.registry.info(nodeId);
    },
  );

  // --- library ----------------------------------------------------------------------------
  app.get(
    '/library',
    {
      schema: {
        tags: ['library'],
        summary: 'Browse and search the library (paged)',
        querystring: z.strictObject({
          q: z.string().max(200).optional(),
          artist: z.string().max(512).optional(),
          album: z.string().max(512).optional(),
          status: z.enum(['ok', 'failed', 'unsupported']).optional(),
          offset: z.coerce.number().int().min(0).max(10_000_000).default(0),
          limit: z.coerce.number().int().min(1).max(500).default(100),
        }),
      },
    },
    async (req) => {
      const { entries, total } = hub.catalogue.browse({ ...req.query, q: req.query.q?.trim() || undefined });
      return { entries: entries.map(apiEntry), total, offset: req.query.offset, limit: req.query.limit, version: hub.catalogue.version() };
    },
  );
  app.get('/library/albums', { schema: { tags: ['library'], summary: 'Albums (by album artist) with track counts' } }, async () => ({ albums: hub.catalogue.albums() }));
  const liveEntry = (entryId: number) => {
    const e = hub.catalogue.entry(entryId);
    if (!e || e.removed) throw new ApiError('not-found', `no library entry ${entryId}`);
    return e;
  };
  app.get('/library/entries/:entryId', { schema: { tags: ['library'], params: entryParams } }, async (req) => apiEntry(liveEntry(req.params.entryId)));
  app.get('/library/entries/:entryId/cover', { schema: { tags: ['library'], summary: "The entry's cover art (image bytes)", params: entryParams } }, async (req, reply) => {
    const e = liveEntry(req.params.entryId);
    const hash = e.metadata.coverHash;
    const cover = hash && /^[0-9a-f]{64}$/.test(hash) ? hub.catalogue.cover(Buffer.from(hash, 'hex')) : undefined;
    if (!cover) throw new ApiError('not-found', `library entry ${e.id} has no cover art`);
    if (req.headers['if-none-match'] === `"${hash}"`) return reply.status(304).send();
    // The type comes from the file's tags: only image types are served as such, so a
    // crafted tag cannot make the hub serve a page of its choosing.
    const mime = IMAGE_TYPES.has(cover.mime.toLowerCase()) ? cover.mime.toLowerCase() : 'application/octet-stream';
    return reply.header('etag', `"${hash}"`).header('cache-control', 'private, max-age=86400').type(mime).send(cover.data);
  });
  app.delete('/library/entries/:entryId', { schema: { tags: ['library'], summary: "Delete the entry's file from the library folder (the watcher then removes it from the catalogue)", params: entryParams } }, async (req, reply) => {
    const e = liveEntry(req.params.entryId);
    if (!hub.library.roots.includes(e.root)) throw new ApiError('conflict', `library entry ${e.id} lies in ${e.root}, which is no longer a library folder`);
    try {
      await unlink(join(e.root, e.path));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new ApiError('not-found', `${e.path} is gone already`);
      throw new ApiError('internal', `cannot delete ${e.path}: ${(err as Error).message}`);
    }
    req.log.info({ entryId: e.id, path: e.path }, 'library file deleted from the web page');
    return reply.status(202).send({ entryId: e.id, path: e.path });
  });
  app.post('/library/rescan', { schema: { tags: ['library'], summary: 'Read every library file again' } }, async (req, reply) => {
    hub.library.rescan();
    return reply.status(202).send(live.libraryState());
  });
  app.get('/library/uploads', { schema: { tags: ['library'], summary: 'Recent uploads and how their indexing went' } }, async () => ({ uploads: live.uploads }));
  app.post(
    '/library/uploads',
    {
      schema: {
        tags: ['library'],
        summary: 'Upload audio files (multipart/form-data, field "file"); each is checked, written atomically into the upload folder, then indexed',
        consumes: ['multipart/form-data'],
      },
    },
    async (req, reply) => {
      if (!req.isMultipart()) throw new ApiError('unsupported-type', 'send the files as multipart/form-data');
      const root = live.uploadRoot;
      if (!root) throw new ApiError('conflict', 'the library is not started yet');
      const stored: (StoredUpload & { uploadId: number })[] = [];
      for await (const part of req.files({ limits: { fileSize: options.uploadMaxBytes, files: 20, fields: 0, parts: 20, fieldNameSize: 100, headerPairs: 100 } })) {
        try {
          const file = await storeUpload(root, options.uploadFolder, part.filename, part.file, options.uploadMaxBytes);
          const upload = live.trackUpload(file.name, file.libraryPath, file.size);
          req.log.info({ path: file.libraryPath, size: file.size, format: file.format }, 'file uploaded from the web page');
          stored.push({ ...file, uploadId: upload.uploadId });
        } catch (err) {
          part.file.resume();
          if (err instanceof ApiError && stored.length > 0) {
            throw new ApiError(err.code, `${err.message} (stored before it: ${stored.map((s) => s.name).join(', ')})`);
          }
          throw err;
        }
      }
      if (stored.length === 0) throw new ApiError('invalid', 'no file in the upload (multipart field "file")');
      return reply.status(201).send({ files: stored.map((s) => ({ uploadId: s.uploadId, name: s.name, path: s.libraryPath, size: s.size, format: s.format })) });
    },
  );

  // --- playlists (kept by hub/playlists; shown and played here) -----------------------------
  app.get('/playlists', { schema: { tags: ['playlists'], summary: 'Saved playlists, as the hub last published them' } }, async () => ({
    playlists: (live.last('playlists') as { playlists?: unknown[] } | undefined)?.playlists ?? [],
  }));
  // The list above has no entries (so it fits its MQTT topic); one playlist comes whole here.
  app.get('/playlists/:playlistId', { schema: { tags: ['playlists'], summary: 'One saved playlist with all its entries, in order', params: z.strictObject({ playlistId: id }) } }, async (req) => {
    const p = hub.playlists.playlist(req.params.playlistId);
    if (!p) throw new ApiError('not-found', `no playlist with id ${req.params.playlistId}`);
    return { ...p, entryCount: p.entryIds.length };
  });
}

import { existsSync } from 'node:fs';
import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { SOFTWARE_VERSION } from '../../src/version.js';
import type { Hub } from '../hub.js';
import { apiRoutes } from './api.js';
import { installErrorHandler, installNotFoundHandler } from './errors.js';
import { LiveEvents } from './events.js';

/** Where `npm run build` puts the page (vite): dist/web, beside dist/hub. */
export const WEB_ASSETS = fileURLToPath(new URL('../../web/', import.meta.url));

/** The path of the OpenAPI description (documented in docs/web.md). */
export const OPENAPI_PATH = '/api/openapi.json';

/**
 * The web page and the REST API as one fastify plugin on the hub's HTTP server: static
 * assets from dist/web at /, the API under /api (zod-validated, JSON errors), live
 * updates at /api/events, the OpenAPI description at /api/openapi.json.
 */
export function webPlugin(hub: Hub): { plugin: FastifyPluginAsync; live: LiveEvents } {
  const live = new LiveEvents(hub, hub.log.child({ module: 'web' }));
  const plugin: FastifyPluginAsync = async (app: FastifyInstance) => {
    installNotFoundHandler(app);
    // The page loads only its own files; nothing is sniffed into another type.
    app.addHook('onSend', async (_request, reply, payload) => {
      reply.header('x-content-type-options', 'nosniff');
      if (String(reply.getHeader('content-type') ?? '').startsWith('text/html')) {
        reply.header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
      }
      return payload;
    });
    app.setValidatorCompiler(validatorCompiler);
    app.setSerializerCompiler(serializerCompiler);
    await app.register(swagger, {
      openapi: {
        info: { title: 'Firefly hub REST API', version: SOFTWARE_VERSION, description: 'Groups, playback, queues, nodes and the library of a Firefly hub. Every action is the MQTT command of the same name (docs/protocol.md).' },
        tags: ['state', 'groups', 'playback', 'queue', 'nodes', 'library', 'playlists'].map((name) => ({ name })),
      },
      transform: jsonSchemaTransform,
    });
    await app.register(
      async (api) => {
        installErrorHandler(api);
        await api.register(multipart, { throwFileSizeLimit: false });
        await apiRoutes(api, hub, live, { uploadMaxBytes: hub.config.web.uploadMaxBytes, uploadFolder: hub.config.web.uploadFolder });
        api.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
      },
      { prefix: '/api' },
    );
    if (existsSync(WEB_ASSETS)) {
      await app.register(fastifyStatic, {
        root: WEB_ASSETS,
        prefix: '/',
        index: ['index.html'],
        // index.html is asked again each time (it names the current build); the assets it
        // names carry a content hash in their file name and never change.
        cacheControl: false,
        setHeaders: (reply, path) => void reply.header('cache-control', path.includes(`${sep}assets${sep}`) ? 'public, max-age=31536000, immutable' : 'no-cache'),
      });
    } else {
      app.get('/', async (_req, reply) => reply.type('text/plain').send(`The web page is not built: run "npm run build" (expected in ${WEB_ASSETS}). The REST API is at /api.`));
    }
    app.addHook('onReady', async () => live.start());
    app.addHook('onClose', async () => live.stop());
  };
  return { plugin, live };
}

import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// The hub's web page: built into dist/web (served by hub/http/web.ts), no CDN, no web fonts.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  plugins: [preact()],
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    target: 'es2020',
    assetsInlineLimit: 0,
    reportCompressedSize: true,
  },
  server: {
    // `npx vite --config web/vite.config.ts` during development: the API from a running hub.
    proxy: { '/api': process.env.FIREFLY_HUB_URL ?? 'http://127.0.0.1:8081' },
  },
});

import { readFileSync } from 'node:fs';

/** Firefly's version, from package.json (found from both src/ and dist/src/). */
export const SOFTWARE_VERSION: string = (() => {
  const url = new URL(import.meta.url.includes('/dist/') ? '../../package.json' : '../package.json', import.meta.url);
  try {
    return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

import type { API } from 'homebridge';
import { FireflyPlatform } from './platform.js';
import { PLATFORM_NAME } from './settings.js';

/**
 * Homebridge's entry point (package.json `main`). It only registers the platform: nothing
 * runs, connects or writes until Homebridge finds a "Firefly" platform block in config.json.
 */
export default (api: API): void => {
  api.registerPlatform(PLATFORM_NAME, FireflyPlatform);
};

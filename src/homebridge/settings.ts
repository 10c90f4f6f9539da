/**
 * The names Homebridge knows this plugin by, in one place (as in homebridge-plugin-template).
 * PLATFORM_NAME is the `pluginAlias` of config.schema.json and the `platform` value of the
 * config block; PLUGIN_NAME is the npm package name.
 */
export const PLATFORM_NAME = 'Firefly';
export const PLUGIN_NAME = 'homebridge-firefly';

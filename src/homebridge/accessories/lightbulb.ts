import { GroupControl } from './group-control.js';

/**
 * A Lightbulb: On = playing, Brightness = group volume. Siri understands it as well as the
 * fan, but "turn off the lights" in that room pauses the music too.
 */
export class LightbulbAccessory extends GroupControl {
  protected model() {
    return 'Group (lightbulb)';
  }
  protected serviceType() {
    return this.platform.api.hap.Service.Lightbulb;
  }
  protected levelType() {
    return this.platform.api.hap.Characteristic.Brightness;
  }
}

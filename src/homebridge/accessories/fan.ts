import { GroupControl } from './group-control.js';

/** The default: a Fan. On = playing, Rotation Speed = group volume; Siri sets both ("set the Kitchen to 30%"). */
export class FanAccessory extends GroupControl {
  protected model() {
    return 'Group (fan)';
  }
  protected serviceType() {
    return this.platform.api.hap.Service.Fan;
  }
  protected levelType() {
    return this.platform.api.hap.Characteristic.RotationSpeed;
  }
}

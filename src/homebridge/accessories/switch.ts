import { GroupControl } from './group-control.js';

/** A Switch: On = playing, nothing else (volume stays with the other controls). */
export class SwitchAccessory extends GroupControl {
  protected model() {
    return 'Group (switch)';
  }
  protected serviceType() {
    return this.platform.api.hap.Service.Switch;
  }
  protected levelType() {
    return undefined;
  }
}

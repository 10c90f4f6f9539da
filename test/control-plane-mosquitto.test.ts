import { describe } from 'node:test';
import { startMosquitto } from './helpers/control-plane.js';
import { controlPlaneSuite } from './helpers/control-plane-suite.js';

// The same suite against a real Mosquitto, with a user name and password (mqtt.url).
describe('control plane, external Mosquitto with a password', () => controlPlaneSuite(startMosquitto));

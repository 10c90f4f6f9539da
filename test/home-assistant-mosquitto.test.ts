import { describe } from 'node:test';
import { startMosquitto } from './helpers/control-plane.js';
import { homeAssistantSuite } from './helpers/home-assistant-suite.js';

// The same against a real Mosquitto with a user name and password, as Home Assistant's own broker (mqtt.url).
describe('Home Assistant, external Mosquitto with a password', () => homeAssistantSuite(startMosquitto));

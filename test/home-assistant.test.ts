import { describe } from 'node:test';
import { embeddedBroker } from './helpers/control-plane.js';
import { homeAssistantSuite } from './helpers/home-assistant-suite.js';

// Home Assistant against the hub's embedded broker (Home Assistant's MQTT integration pointed at the hub).
describe('Home Assistant, embedded broker', () => homeAssistantSuite(embeddedBroker));

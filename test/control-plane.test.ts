import { describe } from 'node:test';
import { embeddedBroker } from './helpers/control-plane.js';
import { controlPlaneSuite } from './helpers/control-plane-suite.js';

// The control plane with the hub's embedded Aedes broker (the default).
describe('control plane, embedded broker', () => controlPlaneSuite(embeddedBroker));

/** The desired state of a device: a pure function of the cluster's objects (DESIGN §3.2), and an engine that keeps it between passes. */
export * from './meship.ts';
export * from './topology.ts';
export { TopologyEngine } from './engine.ts';

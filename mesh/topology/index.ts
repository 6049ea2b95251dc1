/** The desired state of a device: a pure function of the cluster's objects (DESIGN §3.2). */
export * from './meship.ts';
export * from './topology.ts';

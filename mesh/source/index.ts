/** Where Peers, Gateways and Nodes come from: Kubernetes informers, a directory of YAML, or memory. */
export * from './directory.ts';
export * from './kube.ts';
export * from './memory.ts';
export * from './types.ts';

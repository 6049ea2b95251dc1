/** Where Peers, Gateways and Nodes come from: Kubernetes informers, or a directory of YAML. */
export * from './directory.ts';
export * from './kube.ts';
export * from './types.ts';

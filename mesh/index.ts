/** The control-plane core shared by the agent and the gateway. */
export * from './crd/schema.ts';
export * from './crd/types.ts';
export * from './crd/validate.ts';
export * from './backoff.ts';
export * from './failclosed.ts';
export * from './api.ts';
export * from './kube.ts';
export * from './manifests.ts';
export * from './member.ts';
export * from './metrics.ts';
export * from './reconcile/index.ts';
export * from './source/index.ts';
export * from './topology/index.ts';

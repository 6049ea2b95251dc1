/** The bridge to wireguard-go and the kernel. Knows nothing about Kubernetes. */
export * from './addr.ts';
export * from './errors.ts';
export * from './keys/index.ts';
export * from './link/index.ts';
export * from './log.ts';
export * from './uapi/index.ts';
export * from './wireguard-go/index.ts';

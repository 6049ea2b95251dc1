export { cacheDir, findWireguardGo, trixieBinaryPath, wireguardGoVersion } from './binary.ts';
export { AttachedWireguardGo, SpawnedWireguardGo, createWireguardGo, waitForSocket } from './process.ts';
export type { AttachOptions, ReadyContext, SpawnOptions, WireguardGo, WireguardGoOptions, WireguardMode } from './process.ts';

export { cacheDir, findWireguardGo, trixieBinaryPath, wireguardGoVersion } from './binary.ts';
export { AttachedWireguardGo, STABLE_MS, SpawnedWireguardGo, createWireguardGo, waitForSocket } from './process.ts';
export type { AttachOptions, ReadyContext, SpawnOptions, WireguardGo, WireguardGoOptions, WireguardMode, WireguardState, WireguardStatus } from './process.ts';
export { PROMPT_KEEPALIVE, promptHandshakes } from './prompt.ts';
export type { PromptOptions, PromptResult } from './prompt.ts';

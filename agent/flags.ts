/**
 * The agent's own flags and defaults (the flags every member shares are cli/commands/member.ts's).
 * Kept free of mesh imports: `aks-mesh --help` loads this file and nothing of the bridge.
 */
import type { Argv } from 'yargs';

/** Defaults of the shared flags where a node's agent differs from a gateway. */
export const AGENT_DEFAULTS = {
  interface: 'wg-mesh',
  keyFile: '/var/lib/aks-mesh/private.key',
  // 25 s, as the gateway: an idle pair then renews its handshake every ~2 min, so status.peers can tell
  // a live pair (handshake < 3 min) from a broken one. Without it an idle pair never handshakes.
  keepalive: 25,
  metrics: '0.0.0.0:9586',
  listenPort: 51820,
} as const;

export interface AgentFlags {
  endpoint?: string;
}

/** Flags only the agent has (also read from AKS_MESH_<FLAG>). */
export const AGENT_FLAG_NAMES = ['endpoint'] as const;

export function agentFlags<T>(y: Argv<T>): Argv<T & AgentFlags> {
  return y.option('endpoint', {
    type: 'string',
    describe: "This node's endpoint IP:port (default: its Node's first InternalIP and --listen-port)",
  });
}

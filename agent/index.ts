/**
 * The node agent's public face: what only a node does. Its own object is the Peer named after its
 * node (agentRole: allowed IPs from its Node's pod CIDRs, endpoint from its InternalIP), it removes its
 * Node's not-ready taint once converged and writes the trust rules' verdicts; its flags are flags.ts.
 * Everything it shares with the gateway is mesh/member.ts.
 */
export { createAgent } from './agent.ts';
export type { AgentOptions } from './agent.ts';
export { agentRole } from './role.ts';
export type { AgentRoleOptions } from './role.ts';
export { AGENT_DEFAULTS, AGENT_FLAG_NAMES, agentFlags } from './flags.ts';
export type { AgentFlags } from './flags.ts';

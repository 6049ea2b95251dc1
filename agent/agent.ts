/** The node agent: a mesh member whose own object is the Peer named after its node. */
import { MeshMember } from '../mesh/index.ts';
import type { MemberOptions } from '../mesh/index.ts';

export type AgentOptions = Omit<MemberOptions, 'role' | 'name' | 'podCIDRs'>;

export function createAgent(options: AgentOptions): MeshMember {
  return new MeshMember({ ...options, role: 'node', name: options.nodeName });
}

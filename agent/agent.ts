/** The node agent: a mesh member whose own object is the Peer named after its node. (From mesh/member.ts, not mesh/index.ts: the latter loads the Kubernetes client too.) */
import { MeshMember } from '../mesh/member.ts';
import type { MemberOptions } from '../mesh/member.ts';

export type AgentOptions = Omit<MemberOptions, 'role' | 'name' | 'podCIDRs'>;

export function createAgent(options: AgentOptions): MeshMember {
  return new MeshMember({ ...options, role: 'node', name: options.nodeName });
}

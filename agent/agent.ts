/**
 * The node agent: a mesh member whose own object is the Peer named after its node (agentRole).
 * (From mesh/member.ts, not mesh/index.ts: the latter loads the Kubernetes client too.)
 */
import { MeshMember } from '../mesh/member.ts';
import type { MemberOptions } from '../mesh/member.ts';
import { agentRole } from './role.ts';

export type AgentOptions = Omit<MemberOptions, 'role' | 'name'> & {
  /** This node's endpoint IP:port; default: its Node's first InternalIP on the listen port. */
  endpoint?: string;
};

export function createAgent(options: AgentOptions): MeshMember {
  const { endpoint, ...member } = options;
  return new MeshMember({ ...member, name: options.nodeName, role: agentRole({ nodeName: options.nodeName, listenPort: options.listenPort, ...(endpoint ? { endpoint } : {}) }) });
}

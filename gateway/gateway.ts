/**
 * The Konnectivity-side gateway: a mesh member whose own object is a Gateway. It peers with every
 * node (their pod CIDRs and mesh IPs) and routes its --pod-cidr list into its tunnel, in its own
 * network namespace (the Konnectivity agent pod's), so what the API server sends into the cluster
 * reaches pods encrypted.
 */
import { MeshMember } from '../mesh/member.ts';
import type { MemberOptions } from '../mesh/member.ts';

export type GatewayOptions = Omit<MemberOptions, 'role'> & { podCIDRs: string[]; endpoint: string };

export function createGateway(options: GatewayOptions): MeshMember {
  return new MeshMember({ ...options, role: 'gateway' });
}

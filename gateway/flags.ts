/**
 * The gateway's own flags and defaults (the flags every member shares are cli/commands/member.ts's),
 * and what they mean: the seed's deployment snippet runs
 * `./gateway --node-name=$(NODE_NAME) --gateway-endpoint=$(NODE_IP) --pod-cidr=<CIDRs joined by commas>`
 * and nothing else, so those three flags and the pod's environment must be enough.
 * Kept free of mesh imports: `aks-mesh --help` loads this file and nothing of the bridge.
 */
import type { Argv } from 'yargs';

/**
 * The gateway's UDP port when none is given. Not the agent's 51820: in a pod, the seed's
 * `--gateway-endpoint=$(NODE_IP)` points nodes at the node's address, which reaches the pod only
 * through a hostPort (gateway/sidecar.ts), and that node's agent (hostNetwork) already holds 51820.
 */
export const GATEWAY_LISTEN_PORT = 51821;

/** Defaults of the shared flags where a gateway differs from a node's agent. */
export const GATEWAY_DEFAULTS = {
  interface: 'wg-gw',
  // In a pod, an emptyDir (gateway/sidecar.ts): the key lives as long as the pod, and a new pod
  // registers its new public key in its Gateway.
  keyFile: '/var/lib/aks-mesh/gateway.key',
  // The gateway keeps its path open: it sits behind the node's address (a hostPort, or whatever
  // NAT the pod network does), and nodes learn where it really is from its packets.
  keepalive: 25,
  metrics: '0.0.0.0:9587',
  listenPort: GATEWAY_LISTEN_PORT,
} as const;

export interface GatewayFlags {
  name?: string;
  'gateway-endpoint': string;
  'pod-cidr': string[];
  'pod-ip'?: string;
}

/** Flags only the gateway has (also read from AKS_MESH_<FLAG>). */
export const GATEWAY_FLAG_NAMES = ['name', 'gateway-endpoint', 'pod-cidr', 'pod-ip'] as const;

/** A list flag's values, repeated and/or comma-separated ("a,b" "c" → a, b, c). */
export const splitList = (v: readonly unknown[]): string[] =>
  v
    .flatMap((s) => String(s).split(','))
    .map((s) => s.trim())
    .filter(Boolean);

export function gatewayFlags<T>(y: Argv<T>): Argv<T & GatewayFlags> {
  return y
    .option('name', { type: 'string', describe: 'Name of the Gateway object (default: the node name)' })
    .option('gateway-endpoint', {
      type: 'string',
      demandOption: true,
      describe:
        `Where nodes reach this gateway: IP:port (its port is the listen port unless --listen-port is given), or a bare IP such as $(NODE_IP) (that IP on the listen port, ${GATEWAY_LISTEN_PORT} by default: in a pod, a hostPort of that number)`,
    })
    .option('pod-cidr', {
      type: 'string',
      array: true,
      demandOption: true,
      describe: 'Pod CIDRs to route through the tunnel, parts no node holds yet included; comma-separated and/or repeated',
      coerce: splitList,
    })
    .option('pod-ip', {
      type: 'string',
      // The seed's sidecar has POD_IP from the downward API but passes no flag for it.
      default: process.env.POD_IP || undefined,
      defaultDescription: '$POD_IP',
      describe:
        "This pod's own IP: what the pod answers from it (kubelet's probes, which come from the node's address inside --pod-cidr) leaves through the main table, not the tunnel, where nodes would drop it (an `ip rule from <IP> lookup main` one below --rule-priority, removed by --cleanup)",
    }) as unknown as Argv<T & GatewayFlags>;
}

/** What the gateway's flags resolve to. */
export interface GatewaySettings {
  name: string;
  /** Canonical IP:port. */
  endpoint: string;
  /** Canonical CIDRs. */
  podCIDRs: string[];
  listenPort: number;
  /** Canonical, or absent. */
  podIP?: string;
}

/**
 * Resolve the gateway's flags. A bare --gateway-endpoint means that address on the listen port; an
 * IP:port endpoint sets the listen port too unless one was given (`listenPortGiven`): the port nodes
 * send to is the port wireguard-go listens on, unless something between them maps it.
 * Bad values throw naming the flag (and, in a list, the index).
 */
export async function resolveGateway(a: GatewayFlags & { 'node-name': string; 'listen-port': number }, listenPortGiven: boolean): Promise<GatewaySettings> {
  const { canonicalCidr, canonicalEndpoint, canonicalIp } = await import('../native/index.ts');
  const bare = ((): string | null => {
    try {
      return canonicalIp(a['gateway-endpoint'], '--gateway-endpoint');
    } catch {
      return null;
    }
  })();
  const endpoint =
    bare === null ? canonicalEndpoint(a['gateway-endpoint'], '--gateway-endpoint') : bare.includes(':') ? `[${bare}]:${a['listen-port']}` : `${bare}:${a['listen-port']}`;
  const podCIDRs = a['pod-cidr'].map((c, i) => canonicalCidr(c, `--pod-cidr[${i}]`));
  const listenPort = listenPortGiven ? a['listen-port'] : Number(/:(\d+)$/.exec(endpoint)?.[1]);
  const podIP = a['pod-ip'] ? canonicalIp(a['pod-ip'], '--pod-ip') : undefined;
  return { name: a.name ?? a['node-name'], endpoint, podCIDRs, listenPort, ...(podIP ? { podIP } : {}) };
}

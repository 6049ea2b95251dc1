/**
 * The gateway as a sidecar of the Konnectivity agent pod: the container (and the volumes it needs)
 * that `aks-mesh gateway-patch` prints for an existing Deployment and the chart renders for one it
 * manages. Its command and args are the project's original deployment snippet, as written:
 *
 *   command: ["./gateway"]
 *   args: ["--node-name=$(NODE_NAME)", "--gateway-endpoint=$(NODE_IP)", "--pod-cidr=<CIDRs joined by commas>"]
 *
 * Where things live in the pod (the Konnectivity agent is not hostNetwork; the gateway has the pod's
 * network namespace to itself with the Konnectivity agent):
 * - The private key is in a memory emptyDir (/var/lib/aks-mesh): it never reaches the node's disk, it
 *   survives a container restart (same public key, nothing to re-register), and a new pod makes a new
 *   key and writes its public key into its Gateway, which the nodes pick up. The root filesystem stays
 *   read-only.
 * - wireguard-go runs in spawn mode (one container); its UAPI socket is in another memory emptyDir
 *   (/var/run/wireguard), so `aks-mesh inspect` can be run in the container.
 * - The API token is the sidecar's own projected volume (a short-lived token bound to the pod, the
 *   cluster's CA, the namespace: what automountServiceAccountToken would mount), at the path the
 *   in-cluster client reads. So the sidecar works whether or not the target pod automounts its
 *   token, and the chart's pod can turn automounting off, keeping the gateway's token (write
 *   Gateways) out of the third-party Konnectivity agent container.
 * - The live stream (127.0.0.1:9588, aks-mesh inspect --url through kubectl port-forward) is on the
 *   pod's loopback, which the Konnectivity agent container shares: it runs only with a token, a file
 *   from a Secret of the pod's namespace (streamTokenSecret, key "token", mounted into this container
 *   alone; the chart gives its own Deployment the agents' Secret). Without one the stream is off: a
 *   third-party container must not read the mesh's keys, endpoints and traffic without a token.
 * - `--gateway-endpoint=$(NODE_IP)` advertises the node's address on the gateway's listen port
 *   (51821, not the node agent's 51820). A UDP hostPort of that number carries what nodes send there
 *   into the pod (the CNI's portmap). Without hostPort support it still works one way round: the
 *   gateway's keepalive (25 s) starts every session, and WireGuard answers where packets come from.
 * - The settings every member must share (fwmark, table, rule priority, keepalive, resync, the
 *   service/cluster/node CIDRs) and the log level and format are always written out, at the chart's
 *   defaults unless given: the chart passes its mesh.* and agent.log* values, gateway-patch its flags
 *   (same defaults), so the two print the same container. The MTU is not among them: the gateway's
 *   underlay is the pod's interface, whose MTU `auto` reads, not the node's.
 *
 * The object is spelled out with the values the API server would default (fieldRef apiVersion,
 * probe timings, termination message path...), so that a Deployment holds exactly what this returns
 * and a second apply changes nothing.
 */
import { DEFAULT_FWMARK, DEFAULT_RULE_PRIORITY, DEFAULT_TABLE, formatMark, validateFwmark, validateRulePriority, validateTable } from '../native/link/marks.ts';
import { GATEWAY_DEFAULTS, GATEWAY_LISTEN_PORT } from './flags.ts';

/** The metrics, /healthz and /readyz port of the gateway (its --metrics-address default). */
export const GATEWAY_METRICS_PORT = 9587;
export const DEFAULT_SIDECAR_NAME = 'aks-mesh-gateway';
/** Where the stream's token Secret is mounted (its file is token: AKS_MESH_STREAM_TOKEN_FILE). */
export const STREAM_TOKEN_DIR = '/var/run/aks-mesh-stream';
/** The gateway's stream address (cli/member-stream.ts DEFAULT_STREAM_ADDRESS.gateway): the pod's loopback. */
export const DEFAULT_GATEWAY_STREAM_ADDRESS = '127.0.0.1:9588';

export interface GatewaySidecarOptions {
  /** The aks-mesh image (required). */
  image: string;
  /** The pod CIDRs the gateway routes into its tunnel (--pod-cidr); canonical CIDRs, at least one. */
  podCIDRs: readonly string[];
  /** Container name (default aks-mesh-gateway); the volumes are named after it. */
  name?: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** UDP port the gateway listens on, and the hostPort that reaches it (default 51821). */
  listenPort?: number;
  /** Publish the listen port on the node's address (default true): what --gateway-endpoint=$(NODE_IP) advertises. */
  hostPort?: boolean;
  /** The mesh's settings, when they differ from the defaults (the same on every member): AKS_MESH_* variables. */
  meshCIDR?: string;
  /**
   * The safety settings every member shares (the chart's mesh.*, agent.logLevel/logFormat), always
   * written out, at the chart's defaults when not given, so that the chart and `gateway-patch` print
   * the same container and a changed mesh.fwmark or mesh.keepalive reaches the gateway too.
   * Mark on wireguard-go's packets (decimal or 0x hex; default 0x2000), routing table (51820) and ip
   * rule priority (5280) of the gateway.
   */
  fwmark?: string | number;
  table?: number;
  rulePriority?: number;
  /** Persistent keepalive in seconds (default 25, the gateway's and the chart's; 0: off). */
  keepalive?: number;
  /** Seconds between full passes (default 60). */
  resync?: number;
  serviceCIDRs?: readonly string[];
  clusterCIDRs?: readonly string[];
  nodeCIDRs?: readonly string[];
  /** Default json: a pod's log collector wants JSON (the chart's agent.logFormat default). */
  logFormat?: 'text' | 'json';
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** A Secret of the pod's namespace whose key "token" the live stream asks for; none: the stream is off. */
  streamTokenSecret?: string;
  resources?: Resources;
}

export interface Resources {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

/** The parts of a core/v1 Container this sidecar uses (plain JSON: it is printed and rendered). */
export interface Container {
  name: string;
  image: string;
  imagePullPolicy: string;
  command: string[];
  args: string[];
  env: Array<{ name: string; value?: string; valueFrom?: { fieldRef: { apiVersion: string; fieldPath: string } } }>;
  ports: Array<{ name: string; containerPort: number; hostPort?: number; protocol: string }>;
  resources: Resources;
  securityContext: Record<string, unknown>;
  volumeMounts: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  readinessProbe: Record<string, unknown>;
  livenessProbe: Record<string, unknown>;
  terminationMessagePath: string;
  terminationMessagePolicy: string;
}

export interface Volume {
  name: string;
  emptyDir?: { medium?: string; sizeLimit?: string };
  hostPath?: { path: string; type: string };
  secret?: { secretName: string; defaultMode: number; items: Array<{ key: string; path: string }> };
  projected?: { defaultMode: number; sources: Array<Record<string, unknown>> };
}

/** Where the in-cluster client looks for the token, CA and namespace. */
export const SERVICE_ACCOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface GatewaySidecar {
  container: Container;
  volumes: Volume[];
}

/** The defaults of the shared settings: the chart's values.yaml (mesh.*, agent.logLevel/logFormat). */
export const SIDECAR_SETTING_DEFAULTS = {
  fwmark: formatMark(DEFAULT_FWMARK),
  table: DEFAULT_TABLE,
  rulePriority: DEFAULT_RULE_PRIORITY,
  keepalive: GATEWAY_DEFAULTS.keepalive,
  resync: 60,
  logFormat: 'json',
  logLevel: 'info',
} as const;

/** A mark as `aks-mesh gateway --fwmark` reads it (decimal or 0x hex), in the chart's spelling (0x hex); throws naming fwmark. */
function canonicalMark(value: string | number): string {
  const t = String(value).trim();
  const mark = /^0x[0-9a-f]{1,8}$/i.test(t) ? Number.parseInt(t.slice(2), 16) : /^\d{1,10}$/.test(t) ? Number(t) : Number.NaN;
  const problem = Number.isNaN(mark) ? `fwmark ${JSON.stringify(value)}: expected a whole number (decimal or 0x hex), such as ${SIDECAR_SETTING_DEFAULTS.fwmark}` : validateFwmark(mark, { flag: 'fwmark' });
  if (problem) throw new Error(problem);
  return formatMark(mark);
}

export const DEFAULT_SIDECAR_RESOURCES: Resources = {
  requests: { cpu: '20m', memory: '64Mi' },
  limits: { memory: '256Mi' },
};

const fieldEnv = (name: string, fieldPath: string): Container['env'][number] => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });

const probe = (path: string, extra: Record<string, number>): Record<string, unknown> => ({
  httpGet: { path, port: GATEWAY_METRICS_PORT, scheme: 'HTTP' },
  timeoutSeconds: 1,
  periodSeconds: 10,
  successThreshold: 1,
  failureThreshold: 3,
  ...extra,
});

/** Why a container name cannot be the sidecar's (null: it can). Its volumes are <name>-<3 letters>: DNS labels of at most 63 characters. */
export function sidecarNameProblem(name: string): string | null {
  if (/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) && name.length <= 59) return null;
  return `${JSON.stringify(name)}: expected a DNS label of at most 59 characters (lower case letters, digits and '-')`;
}

/** The gateway sidecar container and its volumes. Throws naming the option when one is unusable. */
export function gatewaySidecar(o: GatewaySidecarOptions): GatewaySidecar {
  const name = o.name ?? DEFAULT_SIDECAR_NAME;
  const nameProblem = sidecarNameProblem(name);
  if (nameProblem) throw new Error(`name ${nameProblem}`);
  if (!o.image) throw new Error('image: required (the aks-mesh image, such as registry.example/aks-mesh:1.0.0)');
  if (o.podCIDRs.length === 0) throw new Error('podCIDRs: at least one pod CIDR to route through the tunnel');
  if (o.streamTokenSecret !== undefined && !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(o.streamTokenSecret)) {
    throw new Error(`streamTokenSecret ${JSON.stringify(o.streamTokenSecret)}: expected a Secret name (lower case letters, digits, '-' and '.')`);
  }
  const port = o.listenPort ?? GATEWAY_LISTEN_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`listenPort ${port}: expected 1 to 65535`);
  const d = SIDECAR_SETTING_DEFAULTS;
  const fwmark = canonicalMark(o.fwmark ?? d.fwmark);
  const table = o.table ?? d.table;
  const rulePriority = o.rulePriority ?? d.rulePriority;
  const keepalive = o.keepalive ?? d.keepalive;
  const resync = o.resync ?? d.resync;
  const settingProblem =
    validateTable(table, { flag: 'table' }) ??
    validateRulePriority(rulePriority, { flag: 'rulePriority' }) ??
    (!Number.isInteger(keepalive) || keepalive < 0 || keepalive > 65535 ? `keepalive ${keepalive}: expected 0 (off) to 65535 seconds` : undefined) ??
    (!Number.isInteger(resync) || resync < 1 ? `resync ${resync}: expected a whole number of seconds, at least 1` : undefined);
  if (settingProblem) throw new Error(settingProblem);
  const vol = { run: `${name}-run`, keys: `${name}-keys`, tmp: `${name}-tmp`, tun: `${name}-tun`, api: `${name}-api`, control: `${name}-control`, stream: `${name}-stream` };
  // The listen port spelled out even at its default: the hostPort below must be the same number.
  // The safety settings too (the chart's order): an earlier patch's value is replaced, never kept.
  const settings: Array<[string, string | number | readonly string[] | undefined]> = [
    ['AKS_MESH_MESH_CIDR', o.meshCIDR],
    ['AKS_MESH_LISTEN_PORT', port],
    ['AKS_MESH_FWMARK', fwmark],
    ['AKS_MESH_TABLE', table],
    ['AKS_MESH_RULE_PRIORITY', rulePriority],
    ['AKS_MESH_KEEPALIVE', keepalive],
    ['AKS_MESH_RESYNC', resync],
    ['AKS_MESH_SERVICE_CIDR', o.serviceCIDRs],
    ['AKS_MESH_CLUSTER_CIDR', o.clusterCIDRs],
    ['AKS_MESH_NODE_CIDR', o.nodeCIDRs],
    ['AKS_MESH_LOG_FORMAT', o.logFormat ?? d.logFormat],
    ['AKS_MESH_LOG_LEVEL', o.logLevel ?? d.logLevel],
  ];
  const given = (v: string | number | readonly string[] | undefined): v is string | number | readonly string[] => v !== undefined && (typeof v !== 'object' || v.length > 0);
  const container: Container = {
    name,
    image: o.image,
    imagePullPolicy: o.imagePullPolicy ?? 'IfNotPresent',
    command: ['./gateway'],
    args: ['--node-name=$(NODE_NAME)', '--gateway-endpoint=$(NODE_IP)', `--pod-cidr=${o.podCIDRs.join(',')}`],
    env: [
      fieldEnv('NODE_NAME', 'spec.nodeName'),
      fieldEnv('NODE_IP', 'status.hostIP'),
      fieldEnv('POD_IP', 'status.podIP'),
      ...settings.flatMap(([k, v]) => (given(v) ? [{ name: k, value: typeof v === 'object' ? v.join(',') : String(v) }] : [])),
      // The stream only with a token (see above). The address is spelled out either way: a patch
      // merges env by name, so a later patch with a token must replace an earlier "off". Not
      // required: a port taken in the pod leaves the gateway running without its stream.
      ...(o.streamTokenSecret
        ? [
            { name: 'AKS_MESH_STREAM_ADDRESS', value: DEFAULT_GATEWAY_STREAM_ADDRESS },
            { name: 'AKS_MESH_STREAM_REQUIRED', value: 'false' },
            { name: 'AKS_MESH_STREAM_TOKEN_FILE', value: `${STREAM_TOKEN_DIR}/token` },
          ]
        : [{ name: 'AKS_MESH_STREAM_ADDRESS', value: 'off' }]),
    ],
    ports: [
      { name: 'wireguard', containerPort: port, ...(o.hostPort === false ? {} : { hostPort: port }), protocol: 'UDP' },
      { name: 'gw-metrics', containerPort: GATEWAY_METRICS_PORT, protocol: 'TCP' },
    ],
    resources: o.resources ?? DEFAULT_SIDECAR_RESOURCES,
    // NET_ADMIN alone: the TUN device, its address, the routes and the ip rule, and the fwmark on
    // wireguard-go's socket. Root inside the container (the device node and netlink need it), said
    // explicitly so that a pod-level runAsNonRoot does not silently break it.
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsUser: 0,
      runAsNonRoot: false,
      privileged: false,
      seccompProfile: { type: 'RuntimeDefault' },
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
    },
    volumeMounts: [
      { name: vol.tun, mountPath: '/dev/net/tun' },
      { name: vol.run, mountPath: '/var/run/wireguard' },
      { name: vol.keys, mountPath: '/var/lib/aks-mesh' },
      // Node's compile cache and anything else that wants a temp file, with the root read-only.
      { name: vol.tmp, mountPath: '/tmp' },
      // The control socket (aks-mesh status --local, reconcile, diff through kubectl exec), with the root read-only.
      { name: vol.control, mountPath: '/var/run/aks-mesh' },
      // Its own token: a pod-level automount (if any) then leaves this container alone.
      { name: vol.api, mountPath: SERVICE_ACCOUNT_PATH, readOnly: true },
      ...(o.streamTokenSecret ? [{ name: vol.stream, mountPath: STREAM_TOKEN_DIR, readOnly: true }] : []),
    ],
    // Ready once its Gateway is registered and the device holds every node: a rollout of the
    // Konnectivity agent waits for the tunnel.
    readinessProbe: probe('/readyz', { initialDelaySeconds: 2 }),
    livenessProbe: probe('/healthz', { initialDelaySeconds: 10, failureThreshold: 6 }),
    terminationMessagePath: '/dev/termination-log',
    // The one-line error a bad flag prints shows in `kubectl describe pod`.
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  const volumes: Volume[] = [
    { name: vol.tun, hostPath: { path: '/dev/net/tun', type: 'CharDevice' } },
    { name: vol.run, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
    // Memory: the private key never reaches the node's disk.
    { name: vol.keys, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
    { name: vol.tmp, emptyDir: { sizeLimit: '64Mi' } },
    { name: vol.control, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
    // What automountServiceAccountToken would mount (a pod-bound token that kubelet renews, the
    // cluster's CA, the namespace), for this container only. 0444 (292): read by root in the container.
    {
      name: vol.api,
      projected: {
        defaultMode: 0o444,
        sources: [
          { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
          { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
          { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
        ],
      },
    },
    // The stream's token, readable by root only (0400 is 256).
    ...(o.streamTokenSecret ? [{ name: vol.stream, secret: { secretName: o.streamTokenSecret, defaultMode: 0o400, items: [{ key: 'token', path: 'token' }] } }] : []),
  ];
  return { container, volumes };
}

/**
 * The sidecar as a strategic-merge patch for a Deployment's pod template: containers and volumes
 * merge by name, so the Konnectivity agent's own stay as they are and a second apply changes nothing.
 */
export function gatewaySidecarPatch(sidecar: GatewaySidecar): { spec: { template: { spec: { containers: Container[]; volumes: Volume[] } } } } {
  return { spec: { template: { spec: { containers: [sidecar.container], volumes: sidecar.volumes } } } };
}

/** The gateway's ClusterRole (mesh/manifests.ts rbacObjects; the chart and config/rbac/gateway.yaml install it). */
export const GATEWAY_CLUSTER_ROLE = 'aks-mesh-gateway';

/**
 * The ClusterRoleBinding that gives a Konnectivity agent's service account the gateway's own
 * permissions (read Peers, Gateways and Nodes; write Gateways and their status; events), nothing more.
 */
export function gatewayRoleBinding(serviceAccount: { namespace: string; name: string }): Record<string, unknown> {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: {
      name: `${GATEWAY_CLUSTER_ROLE}-${serviceAccount.namespace}-${serviceAccount.name}`.slice(0, 253),
      labels: { 'app.kubernetes.io/name': 'aks-mesh', 'app.kubernetes.io/part-of': 'aks-mesh', 'app.kubernetes.io/component': 'gateway' },
    },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: GATEWAY_CLUSTER_ROLE },
    subjects: [{ kind: 'ServiceAccount', name: serviceAccount.name, namespace: serviceAccount.namespace }],
  };
}

/**
 * The chart's values.schema.json, generated (by `aks-mesh crds`, with the other manifests) from the
 * same patterns the CRDs and the agent's flag checks use, so `helm install` refuses what the agent
 * would refuse at start: a bad port, CIDR, mode or mark is named by its value path before any pod runs.
 * A test fails when charts/aks-mesh/values.schema.json drifts from this.
 */
import { PATTERNS } from './crd/schema.ts';
import { DEFAULT_FWMARK, DEFAULT_RULE_PRIORITY, DEFAULT_TABLE, LOCAL_RULE_PRIORITY, MAIN_RULE_PRIORITY, RESERVED_TABLES, formatMark, validateFwmark } from '../native/link/marks.ts';

type Schema = Record<string, unknown>;

/** One path component of agent.keyDir: letters, digits, ._- with at least one that is not a dot (no . or ..). */
const KEY_DIR_SEGMENT = '[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*';

/** NAMESPACE/NAME of a service account (DNS label / DNS subdomain): nothing a CEL string could be broken out of. */
export const SERVICE_ACCOUNT_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$';

const object = (properties: Record<string, Schema>, description?: string, required: string[] = Object.keys(properties)): Schema => ({
  type: 'object',
  ...(description ? { description } : {}),
  // A misspelt key (wireguardmode, listenport) is refused rather than silently ignored.
  additionalProperties: false,
  required,
  properties,
});
const string = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
const port = (description: string): Schema => ({ type: 'integer', description, minimum: 1, maximum: 65535 });
const cidrs = (description: string, minItems = 1): Schema => ({
  type: 'array',
  description,
  minItems,
  uniqueItems: true,
  items: { type: 'string', pattern: PATTERNS.cidr },
});
/** Kubernetes objects the chart passes through as they are: the API server checks their insides. */
const passThrough = (description: string, type: 'object' | 'array' = 'object'): Schema => ({ type, description });
const resources: Schema = {
  type: 'object',
  description: 'Container resources (requests, limits)',
  additionalProperties: false,
  properties: {
    requests: { type: 'object', additionalProperties: { type: ['string', 'number'] } },
    limits: { type: 'object', additionalProperties: { type: ['string', 'number'] } },
  },
};
const nodeSelector: Schema = { type: 'object', description: 'Merged with kubernetes.io/os: linux', additionalProperties: { type: 'string' } };
const tolerations: Schema = { type: 'array', description: 'Pod tolerations', items: { type: 'object' } };
const stringList = (description: string): Schema => ({ type: 'array', description, items: { type: 'string' } });

/**
 * The marks the chart offers: one bit, in hex, not kube-proxy's 0x4000 nor kubelet's 0x8000 (which
 * `aks-mesh agent --fwmark` refuses: native/link/marks.ts validateFwmark). An enum, so helm's refusal
 * lists the choices. (The agent takes multi-bit marks too; a cluster that needs one runs it by hand.)
 */
export const CHART_FWMARKS: readonly string[] = Array.from({ length: 32 }, (_, bit) => 2 ** bit)
  .filter((mark) => validateFwmark(mark) === undefined)
  .map(formatMark);

export function valuesSchema(): Schema {
  const meshSettings = object({
    cidr: string('Where mesh IPs come from (IPv4 or IPv6 CIDR); the same on every member', { pattern: PATTERNS.cidr }),
    listenPort: port("wireguard-go's UDP port on every node"),
    interface: string('WireGuard interface name (1 to 15 letters, digits or _=+.-)', { pattern: '^[A-Za-z0-9_=+.-]{1,15}$' }),
    table: {
      type: 'integer',
      description: `Routing table of the mesh routes; not the kernel's ${[...RESERVED_TABLES.keys()].join(', ')} (default ${DEFAULT_TABLE})`,
      minimum: 1,
      maximum: 4294967295,
      not: { enum: [...RESERVED_TABLES.keys()] },
    },
    fwmark: string(`Mark on wireguard-go's own packets: one bit in hex such as ${formatMark(DEFAULT_FWMARK)}, not kube-proxy's 0x4000 nor kubelet's 0x8000`, {
      enum: CHART_FWMARKS,
    }),
    rulePriority: {
      type: 'integer',
      description: `Priority of the mesh ip rule: after the local table's (${LOCAL_RULE_PRIORITY}), before main's (${MAIN_RULE_PRIORITY}); default ${DEFAULT_RULE_PRIORITY}`,
      minimum: LOCAL_RULE_PRIORITY + 1,
      maximum: MAIN_RULE_PRIORITY - 1,
    },
    mtu: {
      description: 'Interface MTU: auto (underlay MTU - 80) or a number from 576 to 65535',
      anyOf: [
        { type: 'string', enum: ['auto'] },
        { type: 'integer', minimum: 576, maximum: 65535 },
      ],
    },
    keepalive: { type: 'integer', description: 'Persistent keepalive in seconds (0: off)', minimum: 0, maximum: 65535 },
    resyncSeconds: { type: 'integer', description: 'Seconds between full reconcile passes', minimum: 1 },
    serviceCIDRs: cidrs("The cluster's service CIDRs"),
    clusterCIDRs: cidrs("The cluster's pod CIDRs"),
    nodeCIDRs: cidrs('The subnets node addresses come from'),
  });
  const image = (description: string): Schema => string(description, { minLength: 1 });
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'aks-mesh chart values',
    ...object(
      {
        // Set by Helm when this chart is a dependency of another.
        global: { type: 'object' },
        image: object({
          repository: image('Image repository of aks-mesh'),
          tag: string('Image tag (empty: the chart appVersion)'),
          pullPolicy: string('Image pull policy', { enum: ['Always', 'IfNotPresent', 'Never'] }),
        }),
        imagePullSecrets: { type: 'array', description: 'Secrets for a private registry', items: object({ name: string('Secret name', { minLength: 1 }) }) },
        mesh: meshSettings,
        nodeBoundWrites: { type: 'boolean', description: 'Install the node-bound-writes admission policy where the API server serves it (Kubernetes >= 1.30)' },
        gatewayServiceAccounts: {
          type: 'array',
          description: 'NAMESPACE/NAME of further service accounts bound to the aks-mesh-gateway ClusterRole (aks-mesh gateway-patch --rbac): the node-bound-writes policy binds their writes to their node too',
          uniqueItems: true,
          items: { type: 'string', pattern: SERVICE_ACCOUNT_PATTERN },
        },
        agent: object(
          {
            wireguardMode: string('attach: wireguard-go as a sidecar container (an agent restart keeps the tunnel); spawn: the agent starts it', { enum: ['attach', 'spawn'] }),
            logLevel: string('Log level', { enum: ['error', 'warn', 'info', 'debug'] }),
            logFormat: string('Log format', { enum: ['json', 'text'] }),
            metricsPort: port('Port of /metrics, /healthz and /readyz on the node'),
            stream: object({
              enabled: { type: 'boolean', description: "Serve the agent's live stream (aks-mesh inspect --url, the dashboard) on the node's loopback, with the token of Secret aks-mesh-stream-token" },
              port: port("Port of the live stream on the node's loopback (127.0.0.1), reached with kubectl port-forward; not agent.metricsPort"),
              required: { type: 'boolean', description: 'true: an agent whose stream cannot listen (its port taken) stops; false: it runs without the stream and logs an error' },
              existingSecret: string('A Secret in the release namespace holding the token (key "token") instead of the generated aks-mesh-stream-token (GitOps); restart the agents after it changes', {
                maxLength: 253,
                pattern: '^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$',
              }),
            }),
            // A read-write DirectoryOrCreate hostPath: only a folder of its own under /var/lib (kept
            // across reboots) or /run (tmpfs: a new key each boot, which the agent publishes in its
            // Peer), never / or /etc (a typo there would hand the agent the node's root or
            // configuration). No . or .. component (a segment has a character other than a dot), and
            // not the state of kubelet, the container runtimes, etcd, systemd or the package manager.
            keyDir: string("Node folder of the agent's private key (a hostPath: a folder of its own under /var/lib or /run)", {
              pattern: `^/(var/lib|run)(/${KEY_DIR_SEGMENT})+$`,
              not: { pattern: '^/(var/lib|run)/(kubelet|containerd|docker|containers|crio|cri-o|runc|cni|etcd|netns|systemd|dbus|udev|user|lock|secrets|wireguard|dpkg|apt|rpm)(/|$)' },
            }),
            resources,
            wireguardResources: resources,
            nodeSelector,
            affinity: passThrough('Pod affinity'),
            tolerations,
            priorityClassName: string('Priority class of the agent pods'),
            maxUnavailable: { description: 'Rolling update: agents replaced at once', anyOf: [{ type: 'integer', minimum: 1 }, { type: 'string', pattern: '^[1-9][0-9]?%$|^100%$' }] },
            podAnnotations: { type: 'object', additionalProperties: { type: 'string' } },
          },
          undefined,
          ['wireguardMode', 'logLevel', 'logFormat', 'metricsPort', 'keyDir', 'resources', 'wireguardResources', 'tolerations'],
        ),
        uninstall: object({
          cleanup: { type: 'boolean', description: 'Run the pre-delete hook that cleans every node on helm uninstall' },
          timeoutSeconds: { type: 'integer', description: 'How long the hook waits for every node (keep helm uninstall --timeout above it)', minimum: 30, maximum: 3600 },
          resources,
          tolerations: { ...tolerations, description: "Extra tolerations for the hook's Job (where every node carries a taint of its own)" },
        }),
        konnectivity: object(
          {
            enabled: { type: 'boolean', description: 'Render a Konnectivity agent Deployment with the gateway sidecar' },
            name: string('Name of the Deployment', { pattern: PATTERNS.dnsLabel, maxLength: 63 }),
            replicas: { type: 'integer', minimum: 0 },
            agent: object(
              {
                image: image('The Konnectivity agent image'),
                command: stringList('Its command'),
                args: stringList('Its arguments'),
                tokenAudience: string('Audience of its token for the Konnectivity server', { minLength: 1 }),
                resources,
              },
              undefined,
              ['image', 'resources'],
            ),
            gateway: object({
              podCIDRs: cidrs('CIDRs the gateway routes into its tunnel (empty: mesh.clusterCIDRs)', 0),
              listenPort: port("The gateway's UDP port, and the hostPort that reaches it"),
              hostPort: { type: 'boolean', description: "Publish the listen port on the node's address" },
              resources,
            }),
            nodeSelector,
            tolerations,
          },
          undefined,
          ['enabled', 'agent', 'gateway'],
        ),
        metricsServer: object({
          konnectivitySidecar: object(
            {
              enabled: { type: 'boolean', description: 'Render the metrics-server Konnectivity sidecar patch (ConfigMap; NOTES print the command)' },
              namespace: string("metrics-server's namespace", { pattern: PATTERNS.dnsLabel }),
              deployment: string("metrics-server's Deployment", { pattern: PATTERNS.dnsSubdomain }),
              image: image('The Konnectivity agent image'),
              command: stringList('Its command'),
              args: stringList('Its arguments (--agent-identifiers=ipv4=$(POD_IP) is added)'),
              tokenAudience: string('Audience of its token for the Konnectivity server', { minLength: 1 }),
              resources,
            },
            undefined,
            ['enabled'],
          ),
        }),
      },
      undefined,
      ['image', 'mesh', 'agent'],
    ),
  };
}

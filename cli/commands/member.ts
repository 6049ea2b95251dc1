/**
 * `aks-mesh agent` and `aks-mesh gateway`: the flags every member shares (each with an AKS_MESH_*
 * environment variable), the role's own flags (agent/flags.ts, gateway/flags.ts), then the
 * long-running member from createAgent or createGateway until SIGTERM/SIGINT. The mesh modules load
 * only when one of these runs, so the small commands stay fast.
 */
import type { Argv } from 'yargs';
import { AGENT_DEFAULTS, AGENT_FLAG_NAMES, agentFlags } from '../../agent/flags.ts';
import type { AgentFlags } from '../../agent/flags.ts';
import { GATEWAY_DEFAULTS, GATEWAY_FLAG_NAMES, gatewayFlags, resolveGateway, splitList } from '../../gateway/flags.ts';
import type { GatewayFlags } from '../../gateway/flags.ts';
// marks.ts is pure (no imports): checking the flags loads nothing of the bridge.
import { DEFAULT_FWMARK, DEFAULT_RULE_PRIORITY, DEFAULT_TABLE, formatMark, validateFwmark, validateRulePriority, validateTable } from '../../native/link/marks.ts';
import { UsageError } from '../format.ts';
import { loadKubeConfig } from '../kubeconfig.ts';
import type { MeshApi } from '../../mesh/api.ts';
import type { MemberOptions, MeshMember } from '../../mesh/member.ts';
import type { PeerSource } from '../../mesh/source/types.ts';
import type { SyncResult } from '../../mesh/reconcile/index.ts';
import type { Topology } from '../../mesh/topology/index.ts';
import { CONTROL_FLAG_NAMES, controlFlags, startControl } from '../member-control.ts';
import type { ControlArgs } from '../member-control.ts';
import type { MemberService } from '../member-services.ts';
import { STREAM_FLAG_NAMES, startStream, streamFlags } from '../member-stream.ts';
import type { StreamArgs } from '../member-stream.ts';

interface CommonArgs {
  'node-name': string;
  interface: string;
  'listen-port': number;
  'mesh-cidr': string;
  kubeconfig?: string;
  'peers-dir'?: string;
  'key-file': string;
  wireguard: 'spawn' | 'attach';
  'wireguard-go'?: string;
  'socket-dir': string;
  mtu: string;
  table: number;
  fwmark: string;
  'allow-kubernetes-mark-bits': boolean;
  'rule-priority': number;
  'service-cidr'?: string[];
  'cluster-cidr'?: string[];
  'node-cidr'?: string[];
  keepalive: number;
  resync: number;
  'apply-mode': 'incremental' | 'replace';
  'metrics-address': string;
  'log-level': string;
  'log-format': 'auto' | 'text' | 'json';
  cleanup: boolean;
}

type AgentArgs = CommonArgs & AgentFlags & StreamArgs & ControlArgs;
type GatewayArgs = CommonArgs & GatewayFlags & StreamArgs & ControlArgs;

/** What the shared flags make: every member option but the role's. */
type BaseOptions = Omit<MemberOptions, 'role' | 'name'>;

/** Flags given as AKS_MESH_<FLAG> environment variables (only for flags that exist: strict parsing stays on). */
function fromEnvironment<T>(y: Argv<T>, names: readonly string[]): Argv<T> {
  const config: Record<string, string | string[]> = {};
  for (const name of names) {
    const value = process.env[`AKS_MESH_${name.toUpperCase().replace(/-/g, '_')}`];
    if (value !== undefined && value !== '') config[name] = LIST_FLAGS.has(name) ? [value] : value;
  }
  return Object.keys(config).length ? y.config(config) : y;
}

/** Flags that take a list (repeated and/or comma-separated; their AKS_MESH_* variable is a comma list). */
const LIST_FLAGS = new Set(['pod-cidr', 'service-cidr', 'cluster-cidr', 'node-cidr']);

const COMMON_FLAGS: readonly string[] = [...STREAM_FLAG_NAMES, ...CONTROL_FLAG_NAMES, 'node-name', 'interface', 'listen-port', 'mesh-cidr', 'kubeconfig', 'peers-dir', 'key-file', 'wireguard', 'wireguard-go', 'socket-dir', 'mtu', 'table', 'fwmark', 'allow-kubernetes-mark-bits', 'rule-priority', 'service-cidr', 'cluster-cidr', 'node-cidr', 'keepalive', 'resync', 'apply-mode', 'metrics-address', 'log-level', 'log-format'];

/** A mark as written on the command line: decimal or 0x hex (what `ip rule` prints); NaN when it is neither. */
function parseMark(text: string): number {
  const t = String(text).trim();
  if (/^0x[0-9a-f]{1,8}$/i.test(t)) return Number.parseInt(t.slice(2), 16);
  if (/^\d{1,10}$/.test(t)) return Number(t);
  return Number.NaN;
}

function common(y: Argv, defaults: { interface: string; keyFile: string; keepalive: number; metrics: string; listenPort: number }): Argv<CommonArgs> {
  return controlFlags(streamFlags(y))
    .option('node-name', { type: 'string', demandOption: true, describe: 'The Kubernetes node this runs on (env AKS_MESH_NODE_NAME; in a pod, from the downward API spec.nodeName)' })
    .option('interface', { type: 'string', default: defaults.interface, describe: 'WireGuard interface name; its UAPI socket is <socket-dir>/<interface>.sock' })
    .option('listen-port', { type: 'number', default: defaults.listenPort, describe: 'UDP port wireguard-go listens on' })
    .option('mesh-cidr', { type: 'string', default: '100.96.0.0/16', describe: 'Where mesh IPs (tunnel addresses) are allocated from; the same on every member' })
    .option('kubeconfig', { type: 'string', describe: 'kubeconfig file (default: in-cluster service account, else $KUBECONFIG or ~/.kube/config)' })
    .option('peers-dir', { type: 'string', describe: 'Standalone mode: read Peer, Gateway and Node YAML from this directory instead of the Kubernetes API (nothing is written back)' })
    .option('key-file', { type: 'string', default: defaults.keyFile, describe: 'Private key file; created (mode 0600) if missing, refused if others can read it' })
    .option('wireguard', { choices: ['spawn', 'attach'] as const, default: 'spawn' as const, describe: 'spawn: start and supervise wireguard-go; attach: use a sidecar\'s wireguard-go through the shared socket dir (an agent restart keeps the tunnel up)' })
    .option('wireguard-go', { type: 'string', describe: 'wireguard-go binary for spawn mode (default: $AKS_MESH_WIREGUARD_GO, the bundled build, then PATH)' })
    .option('socket-dir', { type: 'string', default: '/var/run/wireguard', describe: 'wireguard-go UAPI socket folder' })
    .option('mtu', { type: 'string', default: 'auto', describe: 'Interface MTU, or auto (underlay MTU - 80)' })
    .option('table', { type: 'number', default: DEFAULT_TABLE, describe: 'Routing table for the mesh routes (selected by an ip rule); not the kernel\'s 0, 253, 254 or 255' })
    .option('fwmark', {
      type: 'string',
      default: formatMark(DEFAULT_FWMARK),
      describe: "Mark on wireguard-go's own UDP packets (decimal or 0x hex); they skip the mesh table so endpoints inside routed CIDRs do not loop. Must not be 0 nor share kube-proxy's 0x4000 or kubelet's 0x8000",
    })
    .option('allow-kubernetes-mark-bits', { type: 'boolean', default: false, describe: "Allow a --fwmark with kube-proxy's or kubelet's bits (only where --iptables-masquerade-bit / --iptables-drop-bit moved them)" })
    .option('rule-priority', { type: 'number', default: DEFAULT_RULE_PRIORITY, describe: 'Priority of the ip rule "not fwmark <fwmark> table <table>" (1 to 32765: after local, before main)' })
    .option('service-cidr', { type: 'string', array: true, coerce: splitList, describe: "The cluster's service CIDRs (both families; comma-separated and/or repeated): no external Peer may route them. Same on every member (default 10.0.0.0/16, AKS's)" })
    .option('cluster-cidr', { type: 'string', array: true, coerce: splitList, describe: "The cluster's pod CIDRs (kube-controller-manager --cluster-cidr): no external Peer may route them. Same on every member (default 10.244.0.0/16)" })
    .option('node-cidr', { type: 'string', array: true, coerce: splitList, describe: 'The subnets node addresses come from: no external Peer may route them. Same on every member (default 10.224.0.0/12)' })
    .option('keepalive', { type: 'number', default: defaults.keepalive, describe: 'Persistent keepalive in seconds for peers that set none, and on this member\'s own object (0: off)' })
    .option('resync', { type: 'number', default: 60, describe: 'Seconds between full reconcile passes, which read the device and the routing table and undo drift (someone ran wg set by hand); between them a change costs only what it changes' })
    .option('apply-mode', {
      choices: ['incremental', 'replace'] as const,
      default: 'incremental' as const,
      describe: 'incremental: one small set per changed peer (handshakes and counters survive); replace rewrites the whole device with replace_peers on every change, as the Go prototype and Kilo do; for benchmarks only',
    })
    .option('metrics-address', { type: 'string', default: defaults.metrics, describe: 'host:port for /metrics, /healthz and /readyz ("off" to disable)' })
    .option('log-level', { choices: ['error', 'warn', 'info', 'debug'], default: 'info', describe: 'Log level' })
    .option('log-format', {
      choices: ['auto', 'text', 'json'] as const,
      default: 'auto' as const,
      describe: 'Log format on stderr: json (one object a line, for log collectors), text (one readable line), or auto: text when stderr is a terminal, json otherwise',
    })
    .option('cleanup', { type: 'boolean', default: false, describe: 'Remove everything this member added (routes, ip rule, interface address, its own object in the API) and exit' })
    .check((a) => {
      const port = a['listen-port'];
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--listen-port ${port}: expected 1 to 65535`);
      if (a.mtu !== 'auto' && !/^\d+$/.test(a.mtu)) throw new UsageError(`--mtu ${JSON.stringify(a.mtu)}: expected a number or auto`);
      if (a.kubeconfig && a['peers-dir']) throw new UsageError('--kubeconfig and --peers-dir exclude each other: choose the API or a directory');
      if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(a['node-name']) || a['node-name'].length > 253) {
        throw new UsageError(`--node-name ${JSON.stringify(a['node-name'])}: not a Kubernetes node name (lower case letters, digits, '-' and '.')`);
      }
      if (!/^[A-Za-z0-9_=+.-]{1,15}$/.test(a.interface)) throw new UsageError(`--interface ${JSON.stringify(a.interface)}: an interface name has 1 to 15 letters, digits or _=+.-`);
      for (const k of ['resync', 'keepalive'] as const) {
        if (!Number.isInteger(a[k]) || a[k] < 0) throw new UsageError(`--${k} ${a[k]}: expected a whole number`);
      }
      // Between resyncs the agent trusts what it applied and reads neither the device nor the routes:
      // without them, a change made by hand (wg set, ip route) would never be undone.
      if (a.resync < 1) throw new UsageError(`--resync ${a.resync}: expected at least 1 second (full passes are what repair drift)`);
      const mark = parseMark(a.fwmark);
      const markProblem = Number.isNaN(mark)
        ? `--fwmark ${JSON.stringify(a.fwmark)}: expected a whole number (decimal or 0x hex), such as the default ${formatMark(DEFAULT_FWMARK)}`
        : validateFwmark(mark, { flag: '--fwmark', allowKubernetesBits: a['allow-kubernetes-mark-bits'] });
      const problem = markProblem ?? validateTable(a.table, { flag: '--table' }) ?? validateRulePriority(a['rule-priority'], { flag: '--rule-priority' });
      if (problem) throw new UsageError(problem);
      return true;
    }) as unknown as Argv<CommonArgs>;
}

/** Run a member: `role` names it in logs and metrics, `create` is createAgent or createGateway given the shared options. */
async function run(role: 'node' | 'gateway', a: CommonArgs & StreamArgs & ControlArgs, name: string, create: (options: BaseOptions) => Promise<MeshMember>): Promise<void> {
  // Each mode loads only what it uses: @kubernetes/client-node (with mesh/api.ts and the informers)
  // costs about 85 MB of RSS and most of a second of CPU at start, and a --peers-dir member never
  // talks to an API server. So no mesh/index.ts here (it re-exports everything).
  const { createLogger, canonicalCidr } = await import('../../native/index.ts');
  const { checkSettings } = await import('../../mesh/topology/index.ts');
  // auto: a person at a terminal reads text; a pod's stderr goes to a log collector, which wants JSON.
  const format = a['log-format'] === 'auto' ? (process.stderr.isTTY ? 'text' : 'json') : a['log-format'];
  const log = createLogger({ level: a['log-level'], format, component: role === 'node' ? 'agent' : 'gateway' });
  canonicalCidr(a['mesh-cidr'], '--mesh-cidr');
  const lists = {
    serviceCIDRs: a['service-cidr']?.map((c, i) => canonicalCidr(c, `--service-cidr[${i}]`)),
    clusterCIDRs: a['cluster-cidr']?.map((c, i) => canonicalCidr(c, `--cluster-cidr[${i}]`)),
    nodeSubnets: a['node-cidr']?.map((c, i) => canonicalCidr(c, `--node-cidr[${i}]`)),
  };
  // The same checks the desired state makes on every pass, once up front: bad settings never start.
  const checked = checkSettings({ meshCIDR: a['mesh-cidr'], ...lists });
  if ('problems' in checked) throw new Error(checked.problems[0]);

  let source: PeerSource;
  let api: MeshApi | undefined;
  if (a['peers-dir']) {
    const { DirectorySource } = await import('../../mesh/source/directory.ts');
    source = new DirectorySource(a['peers-dir'], { log });
  } else {
    const [kc, { KubeSource }, { MeshApi }] = await Promise.all([loadKubeConfig(a.kubeconfig), import('../../mesh/source/kube.ts'), import('../../mesh/api.ts')]);
    source = new KubeSource(kc, { log });
    api = new MeshApi(kc, { instance: name, component: role === 'node' ? 'aks-mesh-agent' : 'aks-mesh-gateway', log });
  }
  const { MemberMetrics } = await import('../../mesh/metrics.ts');
  const metrics = new MemberMetrics({ role, name, interface: a.interface });
  // Side services (the live stream, the control socket) see every pass after the metrics do.
  const syncListeners = new Set<(result: SyncResult, topology: Topology) => void>();
  const member = await create({
    nodeName: a['node-name'],
    interfaceName: a.interface,
    listenPort: a['listen-port'],
    meshCIDR: a['mesh-cidr'],
    ...(lists.serviceCIDRs ? { serviceCIDRs: lists.serviceCIDRs } : {}),
    ...(lists.clusterCIDRs ? { clusterCIDRs: lists.clusterCIDRs } : {}),
    ...(lists.nodeSubnets ? { nodeSubnets: lists.nodeSubnets } : {}),
    fwmark: parseMark(a.fwmark),
    table: a.table,
    rulePriority: a['rule-priority'],
    mtu: a.mtu === 'auto' ? 'auto' : Number(a.mtu),
    keyPath: a['key-file'],
    wireguard: a.wireguard,
    wireguardBinary: a['wireguard-go'],
    socketDir: a['socket-dir'],
    persistentKeepalive: a.keepalive || undefined,
    source,
    api,
    resyncMs: a.resync * 1000,
    applyMode: a['apply-mode'],
    log,
    onRequest: (op) => metrics.onRequest(op),
    onSync: (result, topology) => {
      metrics.record(result, topology, member.cannotReadDevice(result));
      for (const listener of syncListeners) {
        try {
          listener(result, topology);
        } catch (err) {
          log.error('a pass listener failed', { error: (err as Error).message });
        }
      }
    },
  });

  // UAPI latency (aksmesh_uapi_request_duration_seconds): every exchange the member's client makes.
  member.wireguard.client.observe((op, seconds, answered) => metrics.onResponse(op, seconds, answered));

  if (a.cleanup) {
    await member.cleanup();
    log.info('cleaned up: routes, rule, interface address and own object removed', { table: a.table, interface: a.interface });
    return;
  }

  const server = a['metrics-address'] === 'off' ? null : await metrics.serve(a['metrics-address'], { synced: () => source.synced(), maxSilenceMs: Math.max(3 * a.resync * 1000, 30_000), wireguard: () => member.wireguard.status(), device: () => member.wireguard.client.get(), busy: () => member.reconciler.busy });
  const stopped = new Promise<string>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve(sig));
  });
  const context = {
    member,
    metrics,
    log,
    role,
    name,
    onSync: (listener: (result: SyncResult, topology: Topology) => void) => {
      syncListeners.add(listener);
      return () => syncListeners.delete(listener);
    },
  };
  // Started before the member, so an operator can ask a member that waits for its wireguard-go.
  const services: MemberService[] = [];
  try {
    for (const start of [startStream, startControl]) {
      const service = await start(a, context);
      if (service) services.push(service);
    }
  } catch (err) {
    await Promise.all(services.map((s) => s.close().catch(() => undefined)));
    server?.close();
    throw err;
  }
  const closeServices = (): Promise<unknown> => Promise.all(services.map((s) => s.close().catch((e: Error) => log.warn('could not close a side service', { error: e.message }))));
  log.info('starting', { role, name, interface: a.interface, wireguard: a.wireguard, source: a['peers-dir'] ? `directory ${a['peers-dir']}` : 'kubernetes', publicKey: member.publicKey });
  try {
    await member.start();
  } catch (err) {
    await closeServices();
    server?.close();
    throw err;
  }
  const sig = await stopped;
  log.info('stopping', { signal: sig, keeps: a.wireguard === 'attach' ? 'the sidecar device, routes and rule (tunnel stays up)' : 'routes and rule (use --cleanup to remove)' });
  await member.stop();
  await closeServices();
  server?.close();
  // member.stop() has aborted every API call and waited a bounded time; a socket that still lingers
  // (a watch connecting to an API server that does not answer) must not keep the process: exit once
  // everything else is done, or after 1 s at the latest.
  setTimeout(() => {
    log.warn('exiting with connections to the API server still open');
    process.exit(0);
  }, 1000).unref();
  log.info('stopped');
}

export function agentCommand(y: Argv): Argv {
  return y.command<AgentArgs>(
    'agent',
    'Run the node agent: register this node\'s Peer, keep wireguard-go and the routes in step with the mesh',
    (c) => fromEnvironment(agentFlags(common(c, AGENT_DEFAULTS)), [...COMMON_FLAGS, ...AGENT_FLAG_NAMES]) as unknown as Argv<AgentArgs>,
    async (a) =>
      run('node', a, a['node-name'], async (options) => {
        const { createAgent } = await import('../../agent/agent.ts');
        return createAgent({ ...options, ...(a.endpoint ? { endpoint: a.endpoint } : {}) });
      }),
  );
}

export function gatewayCommand(y: Argv): Argv {
  return y.command<GatewayArgs>(
    'gateway',
    'Run the Konnectivity-side gateway: register a Gateway, peer with every node, route --pod-cidr into the tunnel',
    (c) => fromEnvironment(gatewayFlags(common(c, GATEWAY_DEFAULTS)), [...COMMON_FLAGS, ...GATEWAY_FLAG_NAMES]) as unknown as Argv<GatewayArgs>,
    async (a) => {
      const listenPortGiven = process.argv.some((x) => x.startsWith('--listen-port')) || Boolean(process.env.AKS_MESH_LISTEN_PORT);
      const g = await resolveGateway(a, listenPortGiven);
      await run('gateway', { ...a, 'listen-port': g.listenPort }, g.name, async (options) => {
        const { createGateway } = await import('../../gateway/gateway.ts');
        return createGateway({ ...options, name: g.name, endpoint: g.endpoint, podCIDRs: g.podCIDRs, ...(g.podIP ? { podIP: g.podIP } : {}) });
      });
    },
  );
}

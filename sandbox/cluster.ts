/**
 * A whole AKS Mesh cluster on one machine (DESIGN §4, e2e): nodes, their pods and the gateway as
 * network namespaces on one Linux bridge (the underlay), a real kube-apiserver + etcd reachable from
 * every namespace (or a directory of YAML instead), and one agent process per node, started with
 * the CLI flags that are the agent's contract.
 *
 *   const cluster = await MeshCluster.start({ nodes: 3, gateway: true });
 *   try {
 *     for (const n of cluster.nodes) await cluster.startAgent(n.name);
 *     await cluster.startAgent('gateway');
 *     const m = await cluster.waitForMatrix();
 *     const capture = await cluster.startCapture();
 *     await cluster.tcp('node-0', 'node-1', 1 << 20);
 *     const packets = await capture.stop();
 *   } finally {
 *     await cluster.stop();
 *   }
 *
 * Layout (X is chosen per run, so that no route on the host overlaps 198.18.X.0/24):
 *
 *   host ── am<tag>h 198.18.X.254/24 (kube-apiserver binds here) ──┐
 *   am-<tag>-ul: bridge br<tag> ─────────────────────────────────────┤
 *   am-<tag>-n<i> (node i): ul<tag>n<i> 198.18.X.<i+1>/24 ───────────┤   ip_forward=1, rp_filter=2
 *        └─ po<tag><i> 10.244.<i>.1/24 ── am-<tag>-p<i> (pod i): pd<tag><i> 10.244.<i>.2/24, default via .1
 *   am-<tag>-gw (gateway): ul<tag>gw 198.18.X.100/24 ────────────────┘
 *
 * Nothing else on the host changes: the host end of one veth, its address and the connected route
 * that goes with it; all traffic stays on the bridge. Everything is removed by name and by pid,
 * agents first (SIGTERM, so they clean up after themselves), also on a failed start and from the
 * process's exit and signal hooks.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { NOT_READY_TAINT } from '../mesh/kube.ts';
import { cidrOverlaps, findWireguardGo, generatePrivateKey, publicKeyOf, writePrivateKeyFile } from '../native/index.ts';
import { TestCluster } from './apiserver.ts';
import { claimPidFile, isRunning, signalPid, tailOf } from './proc.ts';
import { createNode, grantShippedRole, installCrds } from './kube.ts';
import { parsePcap, tcpdumpSummaries } from './pcap.ts';
import type { CapturedPacket } from './pcap.ts';
import { Sandbox } from './sandbox.ts';
import { tcpTransfer } from './tcp.ts';
import type { TransferResult } from './tcp.ts';

const execFileAsync = promisify(execFile);

/** The repository root (where cli/main.ts and node_modules/.bin/node are). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The Node 24 that runs the agents (never the system's node). */
export const NODE_BINARY = join(REPO_ROOT, 'node_modules', '.bin', 'node');
/** The aks-mesh CLI the agents run. */
export const CLI = join(REPO_ROOT, 'cli', 'main.ts');
/** Where wireguard-go puts its UAPI sockets; shared by every network namespace on the machine. */
export const SOCKET_DIR = '/var/run/wireguard';

export const DEFAULT_MESH_CIDR = '100.96.0.0/16';
export const DEFAULT_LISTEN_PORT = 51820;
/** Every member serves metrics on its underlay IP at this port (reachable from the host). */
export const METRICS_PORT = 9464;
/**
 * Every member serves its live stream (mesh/stream.ts) on its underlay IP at this port, reachable
 * from the host with the member's token (a non-loopback stream needs one).
 */
export const STREAM_PORT = 9587;
/** The host's address on the underlay: 198.18.X.254. */
export const HOST_OCTET = 254;
/** The gateway's address on the underlay: 198.18.X.100. */
export const GATEWAY_OCTET = 100;
/** Nodes get 198.18.X.(i+1), so at most 99 of them (the gateway holds .100). */
export const MAX_NODES = 99;
/** Where per-run underlay subnets are reserved (one file per third octet, holding the owner's pid). */
// Machine-wide, not under $TMPDIR: a run with its own TMPDIR (scripts/test) must still see the others' reservations.
export const UNDERLAY_RESERVATIONS = '/tmp/aks-mesh-underlays';

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

export type PeerSourceMode = 'kube' | 'dir';
export type WireguardMode = 'spawn' | 'attach';

export interface MeshClusterOptions {
  /**
   * Number of nodes (default 3), named node-0, node-1, ... 0 makes only the underlay and the API server
   * (what real nodes join: sandbox/kubenode.ts).
   */
  nodes?: number;
  /** A gateway namespace (member name `gateway`) on the bridge (default false). */
  gateway?: boolean;
  /** 'kube' (default): a real API server; 'dir': a peers directory of Node YAML files, no API server. */
  source?: PeerSourceMode;
  /** Members (node names, or 'gateway') whose wireguard-go runs as a sidecar (`--wireguard attach`). */
  attach?: string[];
  /**
   * Create the Node objects with the taint aksmesh.io/agent-not-ready:NoSchedule (kube mode), as an
   * operator's node pool would (kubelet --register-with-taints): each agent removes it from its own
   * Node once it has converged (default false).
   */
  notReadyTaint?: boolean;
  /** Token users declared up front for addNode() (kube mode), so adding a node needs no API server restart (default 2). */
  spareNodes?: number;
  /** --resync seconds (default 10). */
  resyncSeconds?: number;
  /** --mesh-cidr (default 100.96.0.0/16). */
  meshCIDR?: string;
  /** --listen-port (default 51820). */
  listenPort?: number;
  /** The gateway's --pod-cidr list (default ['10.244.0.0/16'], which covers every node's pod CIDR, added ones too). */
  gatewayPodCIDRs?: string[];
  /** Whether Ctrl-C / SIGTERM should tear the cluster down and exit (default true; the demo says false and calls stop()). */
  exitOnSignal?: boolean;
  /**
   * Options of the API server (kube mode): serviceAccounts keeps the ServiceAccount admission plugin on
   * (real nodes run a controller-manager; TestClusterOptions.serviceAccounts), extraArgs are appended
   * to kube-apiserver's flags.
   */
  apiServer?: { serviceAccounts?: boolean; extraArgs?: string[] };
  /** Install the Peer and Gateway CRDs at start (kube mode; default true). False leaves them to e.g. a Helm chart. */
  crds?: boolean;
  /** Keep the temp dir (logs, captures, kubeconfigs, keys) after stop() (default: $AKS_MESH_KEEP_LOGS === '1'). */
  keepLogs?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** What node and gateway have in common. */
export interface ClusterMember {
  /** The Node name (node) or 'gateway'; what startAgent() and friends take. */
  name: string;
  role: 'node' | 'gateway';
  /** The member's network namespace (the agent runs in it). */
  ns: string;
  /** Its address on the underlay bridge, 198.18.X.n. */
  underlayIp: string;
  /** Its underlay veth (inside ns). */
  underlayInterface: string;
  /** The WireGuard interface (and UAPI socket) name, unique on this machine. */
  interfaceName: string;
  /** /var/run/wireguard/<interfaceName>.sock */
  socketPath: string;
  listenPort: number;
  /** underlayIp:listenPort: --endpoint (node) or --gateway-endpoint (gateway). */
  endpoint: string;
  /** --key-file: created (0600) before the agent starts, so publicKey is known up front. */
  keyFile: string;
  publicKey: string;
  /** --metrics-address: underlayIp:METRICS_PORT. */
  metricsAddress: string;
  /** --stream-address: underlayIp:STREAM_PORT. */
  streamAddress: string;
  /** ws://underlayIp:STREAM_PORT/stream: the live stream, reachable from the host with streamToken. */
  streamUrl: string;
  /** The token the stream asks for (Authorization: Bearer <token>); random per member. */
  streamToken: string;
  /** --stream-token-file: holds streamToken (0600). */
  streamTokenFile: string;
  wireguard: WireguardMode;
  /** The token user this member's agent authenticates as (kube mode). */
  user?: string;
  /** --kubeconfig (kube mode): server https://198.18.X.254:<port>, the cluster CA, the user's token. */
  kubeconfig?: string;
  /** The agent's stdout and stderr, appended across restarts. */
  logFile: string;
  /** The wireguard-go sidecar's output (attach mode). */
  sidecarLogFile?: string;
}

export interface ClusterNode extends ClusterMember {
  role: 'node';
  index: number;
  /** The pod namespace behind the node. */
  podNs: string;
  /** 10.244.i.2 */
  podIp: string;
  /** 10.244.i.1: the node's end of the pod veth, the pod's default gateway. */
  podGatewayIp: string;
  /** 10.244.i.0/24, in the Node's spec.podCIDRs. */
  podCIDR: string;
}

export interface ClusterGateway extends ClusterMember {
  role: 'gateway';
  /** --pod-cidr */
  podCIDRs: string[];
}

export interface UnderlayInfo {
  /** The namespace holding the bridge (and where captures run). */
  ns: string;
  bridge: string;
  /** '198.18.X' */
  prefix: string;
  /** '198.18.X.0/24' */
  subnet: string;
  /** 198.18.X.254: the host's address, where kube-apiserver listens. */
  hostIp: string;
  /** The host's veth into the bridge (the only thing of ours outside our namespaces). */
  hostInterface: string;
}

export interface StartAgentOptions {
  /** Replace (a string) or drop (null) a contract flag, e.g. { '--resync': '1', '--endpoint': null }. */
  flags?: Record<string, string | null>;
  /** Appended after the flags. */
  extraArgs?: string[];
  /** Added to the agent's environment. */
  env?: Record<string, string>;
  /** Run this script instead of cli/main.ts (tests of the harness itself). */
  program?: string;
}

export interface AgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when stopAgent/stop had to SIGKILL it after its grace period. */
  forced: boolean;
}

export interface PingResult {
  ok: boolean;
  sent: number;
  received: number;
  /** ping's stdout and stderr. */
  output: string;
}

export interface MatrixCell {
  /** A node name or 'gateway' (the source is that member's pod, or the gateway namespace itself). */
  from: string;
  /** The node whose pod is pinged. */
  to: string;
  ip: string;
  ok: boolean;
}

export interface Matrix {
  cells: MatrixCell[];
  ok: boolean;
  failed: MatrixCell[];
  /** A from × to table of ok / FAIL. */
  table: string;
}

export interface CaptureOptions {
  /** A tcpdump filter expression, as separate words (e.g. ['udp'] or ['not', 'arp']). */
  filter?: string[];
}

export interface Capture {
  /** The pcap file tcpdump writes. */
  file: string;
  /** Stop tcpdump and return every packet it saw on the bridge (idempotent). */
  stop(): Promise<CapturedPacket[]>;
}

export interface ClusterTimings {
  /** Subnet choice, underlay namespace, bridge, host veth. */
  underlayMs: number;
  /** Node, pod and gateway namespaces (in parallel with the API server). */
  namespacesMs: number;
  /** TestCluster.start() (kube mode; in parallel with the namespaces). */
  apiServerMs: number;
  /** CRDs, RBAC, Node objects, kubeconfigs (kube) or the peers directory (dir). */
  objectsMs: number;
  /** The whole start(). */
  totalMs: number;
}

export interface StopReport {
  /** Members whose agent did not exit within its grace period after SIGTERM and was SIGKILLed. */
  forced: string[];
  ms: number;
  /** Milliseconds per step: agents, sidecars, namespaces, apiServer, files. */
  steps: Record<string, number>;
}

interface Proc {
  child: ChildProcess;
  pid: number;
  exited: Promise<AgentExit>;
  exit?: AgentExit;
  /** Stopped by us (stopAgent/stop): waitFor does not treat its exit as a failure. */
  expected: boolean;
  /** An unexpected exit that a waitFor already failed on (reported once). */
  reported?: boolean;
}

interface MemberState {
  member: ClusterNode | ClusterGateway;
  agent?: Proc;
  sidecar?: Proc;
  lastStart: StartAgentOptions;
}

const live = new Set<MeshCluster>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  // Prepended so that agents get their SIGTERM before Sandbox's own hooks SIGKILL what they track.
  process.prependListener('exit', () => {
    for (const cluster of live) cluster.cleanupSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.prependListener(sig, () => {
      const ours = [...live].filter((c) => c.exitOnSignal);
      if (ours.length === 0) return;
      for (const cluster of ours) cluster.cleanupSync();
      process.exit(128 + (osConstants.signals[sig] ?? 0));
    });
  }
}

export class MeshCluster {
  readonly box: Sandbox;
  /** Temp dir: logs, keys, kubeconfigs, captures, the peers directory. */
  readonly dir: string;
  readonly source: PeerSourceMode;
  readonly underlay: UnderlayInfo;
  /** The API server (kube mode), or null. */
  readonly kube: TestCluster | null;
  /** The peers directory (dir mode; --peers-dir), or null. */
  readonly peersDir: string | null;
  readonly meshCIDR: string;
  readonly resyncSeconds: number;
  readonly exitOnSignal: boolean;
  readonly timings: ClusterTimings;

  private readonly members = new Map<string, MemberState>();
  private readonly listenPort: number;
  private readonly gatewayPodCIDRs: string[];
  private readonly keepLogs: boolean;
  private readonly log: (line: string) => void;
  private readonly reservation: string;
  private readonly spareUsers: string[] = [];
  private readonly notReadyTaint: boolean;
  private readonly captures = new Set<Proc>();
  private captureCount = 0;
  private stopped = false;

  private constructor(init: {
    box: Sandbox;
    dir: string;
    source: PeerSourceMode;
    underlay: UnderlayInfo;
    reservation: string;
    options: MeshClusterOptions;
  }) {
    const o = init.options;
    this.box = init.box;
    this.dir = init.dir;
    this.source = init.source;
    this.underlay = init.underlay;
    this.reservation = init.reservation;
    this.kube = null;
    this.peersDir = init.source === 'dir' ? join(init.dir, 'peers') : null;
    this.meshCIDR = o.meshCIDR ?? DEFAULT_MESH_CIDR;
    this.resyncSeconds = o.resyncSeconds ?? 10;
    this.listenPort = o.listenPort ?? DEFAULT_LISTEN_PORT;
    this.gatewayPodCIDRs = o.gatewayPodCIDRs ?? ['10.244.0.0/16'];
    this.exitOnSignal = o.exitOnSignal ?? true;
    this.notReadyTaint = o.notReadyTaint ?? false;
    this.keepLogs = o.keepLogs ?? process.env.AKS_MESH_KEEP_LOGS === '1';
    this.log = o.log ?? (() => undefined);
    this.timings = { underlayMs: 0, namespacesMs: 0, apiServerMs: 0, objectsMs: 0, totalMs: 0 };
  }

  /** Build the cluster (no agent started). Everything built so far is removed again if a step fails. */
  static async start(options: MeshClusterOptions = {}): Promise<MeshCluster> {
    const t0 = performance.now();
    const nodeCount = options.nodes ?? 3;
    if (!Number.isInteger(nodeCount) || nodeCount < 0 || nodeCount > MAX_NODES) throw new Error(`nodes: ${nodeCount} is not between 0 and ${MAX_NODES}`);
    const source = options.source ?? 'kube';
    const nodeNames = Array.from({ length: nodeCount }, (_, i) => nodeNameOf(i));
    for (const name of options.attach ?? []) {
      if (!nodeNames.includes(name) && !(name === 'gateway' && options.gateway)) {
        throw new Error(`attach: ${name} is not a member of this cluster (${[...nodeNames, ...(options.gateway ? ['gateway'] : [])].join(', ')})`);
      }
    }
    const box = new Sandbox({ exitOnSignal: options.exitOnSignal ?? true });
    const dir = await mkdtemp(join(tmpdir(), 'aks-mesh-cluster-'));
    let reservation = '';
    let cluster: MeshCluster | undefined;
    try {
      const { octet, file } = await reserveUnderlay();
      reservation = file;
      const prefix = `198.18.${octet}`;
      const underlay: UnderlayInfo = {
        ns: box.nsName('ul'),
        bridge: box.ifName('br', ''),
        prefix,
        subnet: `${prefix}.0/24`,
        hostIp: `${prefix}.${HOST_OCTET}`,
        hostInterface: box.ifName('am', 'h'),
      };
      cluster = new MeshCluster({ box, dir, source, underlay, reservation, options });
      live.add(cluster);
      hookExit();
      const c = cluster;
      c.log(`underlay ${underlay.subnet}, tag ${box.tag}, dir ${dir}`);
      await c.buildUnderlay();
      c.timings.underlayMs = performance.now() - t0;

      const attach = new Set(options.attach ?? []);
      const users = [
        ...Array.from({ length: nodeCount + (options.spareNodes ?? 2) }, (_, i) => ({ name: userOf(nodeNameOf(i)) })),
        ...(options.gateway ? [{ name: userOf('gateway') }] : []),
      ];
      const t1 = performance.now();
      const apiServer =
        source === 'kube'
          ? TestCluster.start({
              bindAddress: underlay.hostIp,
              extraIps: [underlay.hostIp],
              users,
              exitOnSignal: options.exitOnSignal ?? true,
              serviceAccounts: options.apiServer?.serviceAccounts ?? false,
              extraArgs: options.apiServer?.extraArgs ?? [],
            }).then((kube) => {
              (c as { kube: TestCluster | null }).kube = kube;
              c.timings.apiServerMs = performance.now() - t1;
              return kube;
            })
          : Promise.resolve(null);
      const builds = [
        ...nodeNames.map((_, i) => c.buildNode(i, attach.has(nodeNameOf(i)) ? 'attach' : 'spawn')),
        ...(options.gateway ? [c.buildGateway(attach.has('gateway') ? 'attach' : 'spawn')] : []),
      ];
      void Promise.all(builds).then(() => (c.timings.namespacesMs = performance.now() - t1), () => undefined);
      // Wait for every step even when one fails, so that stop() finds everything they made.
      const failed = (await Promise.allSettled([apiServer, ...builds])).find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      c.spareUsers.push(...users.map((u) => u.name).filter((u) => ![...c.members.keys()].some((m) => userOf(m) === u)));

      const t2 = performance.now();
      if (c.kube) {
        if (options.crds ?? true) await installCrds(c.kube);
        await Promise.all([...c.members.values()].map((s) => c.registerKube(s.member, c.notReadyTaint)));
      } else {
        mkdirSync(c.peersDir as string, { recursive: true, mode: 0o755 });
        for (const node of c.nodes) c.writeNodeFile(node);
      }
      c.timings.objectsMs = performance.now() - t2;
      c.timings.totalMs = performance.now() - t0;
      c.log(`cluster up in ${Math.round(c.timings.totalMs)} ms: ${[...c.members.keys()].join(', ')}`);
      return c;
    } catch (err) {
      if (cluster) await cluster.stop().catch(() => undefined);
      else {
        box.cleanupSync();
        if (reservation) releaseUnderlay(reservation);
        await rm(dir, { recursive: true, force: true });
      }
      throw err;
    }
  }

  /** The nodes, in index order. */
  get nodes(): ClusterNode[] {
    return [...this.members.values()]
      .map((s) => s.member)
      .filter((m): m is ClusterNode => m.role === 'node')
      .sort((a, b) => a.index - b.index);
  }

  get gateway(): ClusterGateway | undefined {
    return this.members.get('gateway')?.member as ClusterGateway | undefined;
  }

  /** A node or the gateway by name; throws naming the members when there is none. */
  member(name: string): ClusterNode | ClusterGateway {
    return this.state(name).member;
  }

  /** A node by name. */
  node(name: string): ClusterNode {
    const m = this.member(name);
    if (m.role !== 'node') throw new Error(`${name} is the gateway, not a node`);
    return m;
  }

  /** A KubeConfig for a user (default admin) against https://198.18.X.254:<port> (kube mode). */
  kubeConfig(user = 'admin'): k8s.KubeConfig {
    if (!this.kube) throw new Error('this cluster has no API server (source: dir)');
    return this.kube.kubeConfig(user, { server: this.kube.server });
  }

  // ---------------------------------------------------------------- agents

  /** The command line startAgent() runs for a member (after `ip netns exec <ns>`). */
  agentCommand(name: string, options: StartAgentOptions = {}): string[] {
    const m = this.member(name);
    const source: Array<[string, string]> = m.kubeconfig ? [['--kubeconfig', m.kubeconfig]] : [['--peers-dir', this.peersDir as string]];
    const identity: Array<[string, string]> =
      m.role === 'node'
        ? [['--node-name', m.name], ['--interface', m.interfaceName], ['--listen-port', String(m.listenPort)]]
        : [['--node-name', m.name], ['--gateway-endpoint', m.endpoint], ['--pod-cidr', m.podCIDRs.join(',')], ['--interface', m.interfaceName]];
    const flags: Array<[string, string]> = [
      ...identity,
      ['--mesh-cidr', this.meshCIDR],
      ...source,
      ['--key-file', m.keyFile],
      ['--wireguard', m.wireguard],
      ...(m.role === 'node' ? [['--endpoint', m.endpoint] as [string, string]] : []),
      ['--resync', String(this.resyncSeconds)],
      ['--metrics-address', m.metricsAddress],
      ['--stream-address', m.streamAddress],
      ['--stream-token-file', m.streamTokenFile],
      // In the cluster's temp dir: the host's /var/run/aks-mesh is not the harness's to fill (and a
      // killed agent leaves its socket file behind).
      ['--control-socket', join(this.dir, 'control', `${m.interfaceName}.sock`)],
      ['--log-format', 'text'],
    ];
    const overrides = options.flags ?? {};
    const out: string[] = [];
    const seen = new Set<string>();
    for (const [flag, value] of flags) {
      seen.add(flag);
      if (flag in overrides) {
        const v = overrides[flag];
        if (v !== null) out.push(flag, v);
      } else out.push(flag, value);
    }
    for (const [flag, v] of Object.entries(overrides)) if (!seen.has(flag) && v !== null) out.push(flag, v);
    return [NODE_BINARY, options.program ?? CLI, m.role === 'node' ? 'agent' : 'gateway', ...out, ...(options.extraArgs ?? [])];
  }

  /**
   * Start a member's agent in its namespace (and first its wireguard-go sidecar in attach mode, if
   * not running). Returns once the process is spawned; wait for what it does with waitFor().
   * Its output is appended to member.logFile.
   */
  async startAgent(name: string, options: StartAgentOptions = {}): Promise<{ pid: number }> {
    this.assertRunning();
    const s = this.state(name);
    if (s.agent && !s.agent.exit) throw new Error(`the agent of ${name} already runs (pid ${s.agent.pid})`);
    if (s.member.wireguard === 'attach' && !(s.sidecar && !s.sidecar.exit)) await this.startSidecar(name);
    s.lastStart = options;
    const argv = this.agentCommand(name, options);
    s.agent = this.spawnLogged(s.member.ns, argv, s.member.logFile, `${s.member.role} ${name}`, options.env ?? {});
    this.log(`started the ${s.member.role === 'node' ? 'agent' : 'gateway'} of ${name} (pid ${s.agent.pid})`);
    return { pid: s.agent.pid };
  }

  /**
   * Signal a member's agent and wait for it to exit (SIGKILL after graceMs, default 10 s, then
   * `forced`). Returns how it exited; when it was not running, its last exit (or null).
   */
  async stopAgent(name: string, signal: NodeJS.Signals = 'SIGTERM', options: { graceMs?: number } = {}): Promise<AgentExit | null> {
    const s = this.state(name);
    if (!s.agent) return null;
    return terminate(s.agent, signal, options.graceMs ?? 10_000);
  }

  /** stopAgent (SIGTERM) then startAgent with the options of the last start (or new ones). */
  async restartAgent(name: string, options?: StartAgentOptions): Promise<{ pid: number; exit: AgentExit | null }> {
    const exit = await this.stopAgent(name, 'SIGTERM');
    const { pid } = await this.startAgent(name, options ?? this.state(name).lastStart);
    return { pid, exit };
  }

  /** The agent's pid while it runs. */
  agentPid(name: string): number | undefined {
    const a = this.state(name).agent;
    return a && !a.exit ? a.pid : undefined;
  }

  /** How the agent's last process exited (undefined while it runs or if it never started). */
  agentExit(name: string): AgentExit | undefined {
    return this.state(name).agent?.exit;
  }

  /** Start the wireguard-go sidecar of an attach-mode member (`wireguard-go -f <if>`) and wait for its socket. */
  async startSidecar(name: string): Promise<{ pid: number }> {
    this.assertRunning();
    const s = this.state(name);
    const m = s.member;
    if (m.wireguard !== 'attach' || !m.sidecarLogFile) throw new Error(`${name} runs wireguard-go in spawn mode (no sidecar)`);
    if (s.sidecar && !s.sidecar.exit) throw new Error(`the sidecar of ${name} already runs (pid ${s.sidecar.pid})`);
    const proc = this.spawnLogged(m.ns, [findWireguardGo(), '-f', m.interfaceName], m.sidecarLogFile, `wireguard-go sidecar of ${name}`, { WG_PROCESS_FOREGROUND: '1' });
    s.sidecar = proc;
    await this.waitFor(`the UAPI socket ${m.socketPath} of ${name}'s sidecar`, () => {
      if (proc.exit) throw new Error(`the sidecar exited (${describeExit(proc.exit)})`);
      return existsSync(m.socketPath);
    }, { timeoutMs: 10_000, logsOf: [name], failOnAgentExit: false });
    return { pid: proc.pid };
  }

  /** Signal the sidecar and wait for it to exit (SIGKILL after graceMs, default 5 s). */
  async stopSidecar(name: string, signal: NodeJS.Signals = 'SIGTERM', options: { graceMs?: number } = {}): Promise<AgentExit | null> {
    const sidecar = this.state(name).sidecar;
    if (!sidecar) return null;
    return terminate(sidecar, signal, options.graceMs ?? 5000);
  }

  /**
   * The pid of the wireguard-go serving a member's interface (the agent's child in spawn mode, the
   * sidecar in attach mode): a /proc scan for exactly `wireguard-go -f <our interface>` running in
   * that member's namespace. undefined when there is none.
   */
  wireguardGoPid(name: string): number | undefined {
    const m = this.member(name);
    const netns = netnsId(m.ns);
    return wireguardGoPids([m.interfaceName]).find((p) => netns !== undefined && processNetns(p.pid) === netns)?.pid;
  }

  /** The last lines of a member's agent log (and of its sidecar's). */
  logTail(name: string, lines = 40): string {
    const m = this.member(name);
    let out = `--- ${m.logFile} (last ${lines} lines)\n${tailOf(m.logFile, lines)}`;
    if (m.sidecarLogFile) out += `\n--- ${m.sidecarLogFile} (last ${lines} lines)\n${tailOf(m.sidecarLogFile, lines)}`;
    return out;
  }

  /**
   * Poll `check` until it returns a truthy value. On timeout (default 30 s) the error names `what`,
   * the last value seen and the log tails of `logsOf` (default: every member whose agent was
   * started). Unless failOnAgentExit is false, it fails at once when an agent or a sidecar exited
   * that nobody stopped (each such exit fails one wait).
   */
  async waitFor<T>(
    what: string,
    check: () => Promise<T> | T,
    options: { timeoutMs?: number; intervalMs?: number; logsOf?: string[]; failOnAgentExit?: boolean } = {},
  ): Promise<Exclude<T, null | undefined | false | 0 | ''>> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const deadline = performance.now() + timeoutMs;
    const logs = () => (options.logsOf ?? [...this.members.values()].filter((s) => s.agent).map((s) => s.member.name)).map((n) => this.logTail(n, 30)).join('\n');
    let last: unknown;
    for (;;) {
      if (options.failOnAgentExit ?? true) {
        for (const s of this.members.values()) {
          for (const [kind, p] of [['agent', s.agent], ['wireguard-go sidecar', s.sidecar]] as const) {
            if (!p?.exit || p.expected || p.reported) continue;
            p.reported = true;
            throw new Error(`the ${kind} of ${s.member.name} (pid ${p.pid}) exited (${describeExit(p.exit)}) while waiting for ${what}\n${this.logTail(s.member.name, 40)}`);
          }
        }
      }
      try {
        last = await check();
        if (last) return last as Exclude<T, null | undefined | false | 0 | ''>;
      } catch (err) {
        last = err;
      }
      if (performance.now() > deadline) {
        const shown = last instanceof Error ? last.message : JSON.stringify(last);
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${shown})\n${logs()}`);
      }
      await sleep(options.intervalMs ?? 200);
    }
  }

  // ---------------------------------------------------------------- nodes

  /**
   * A new node: namespaces, underlay and pod veths, key file, and its Node object (kube: in the API
   * server, with an RBAC-bound user and a kubeconfig; dir: a YAML file). Its agent is not started.
   * notReadyTaint (default: the cluster's option): its Node carries aksmesh.io/agent-not-ready:NoSchedule.
   */
  async addNode(options: { attach?: boolean; notReadyTaint?: boolean } = {}): Promise<ClusterNode> {
    this.assertRunning();
    const used = new Set(this.nodes.map((n) => n.index));
    let i = 0;
    while (used.has(i)) i++;
    if (i >= MAX_NODES) throw new Error(`no room for another node (at most ${MAX_NODES})`);
    const node = await this.buildNode(i, options.attach ? 'attach' : 'spawn');
    if (this.kube) {
      const user = userOf(node.name);
      const spare = this.spareUsers.indexOf(user);
      if (spare >= 0) this.spareUsers.splice(spare, 1);
      else {
        this.log(`declaring user ${user}: kube-apiserver restarts`);
        await this.kube.addUser(user);
      }
      await this.registerKube(node, options.notReadyTaint ?? this.notReadyTaint);
    } else this.writeNodeFile(node);
    return node;
  }

  /** A Node's taints as `key:effect` (kube mode), sorted; [] when it has none. */
  async nodeTaints(name: string): Promise<string[]> {
    const node = await this.kubeConfig().makeApiClient(k8s.CoreV1Api).readNode({ name });
    return (node.spec?.taints ?? []).map((t) => `${t.key}:${t.effect}`).sort();
  }

  /**
   * Write objects (Node, Peer, Gateway manifests) as one YAML file into the peers directory (dir
   * mode), atomically: written beside it, then renamed in.
   */
  writePeersFile(fileName: string, objects: object[]): string {
    if (!this.peersDir) throw new Error('this cluster has no peers directory (source: kube)');
    if (basename(fileName) !== fileName) throw new Error(`${fileName}: a file name, not a path`);
    const path = join(this.peersDir, fileName);
    const temp = join(this.dir, `.${fileName}.${process.pid}.tmp`);
    writeFileSync(temp, objects.map((o) => stringify(o)).join('---\n'), { mode: 0o644 });
    renameSync(temp, path);
    return path;
  }

  /** Remove a file from the peers directory. */
  removePeersFile(fileName: string): void {
    if (!this.peersDir) throw new Error('this cluster has no peers directory (source: kube)');
    rmSync(join(this.peersDir, basename(fileName)), { force: true });
  }

  // ---------------------------------------------------------------- traffic

  /**
   * Like a CNI with host-gw routes (kubenet): every node's pod CIDR routed in clear through that
   * node's underlay address, in every other member's main table. What the mesh must never let pod
   * traffic take; remove() takes them out again (only the routes this call added).
   */
  async addClearPodRoutes(): Promise<{ remove(): Promise<void> }> {
    const added: Array<[string, string, string]> = [];
    const members = [...this.nodes, ...(this.gateway ? [this.gateway] : [])];
    try {
      for (const m of members) {
        for (const n of this.nodes) {
          if (n === m) continue;
          await this.box.ip(m.ns, 'route', 'add', n.podCIDR, 'via', n.underlayIp);
          added.push([m.ns, n.podCIDR, n.underlayIp]);
        }
      }
    } catch (err) {
      for (const [ns, cidr, via] of added) await this.box.ip(ns, 'route', 'del', cidr, 'via', via).catch(() => undefined);
      throw err;
    }
    return {
      remove: async () => {
        for (const [ns, cidr, via] of added.splice(0)) await this.box.ip(ns, 'route', 'del', cidr, 'via', via).catch(() => undefined);
      },
    };
  }

  /** Ping `ip` from a namespace (or a member name: its namespace) until `count` replies or timeoutMs (default 2 s). Never throws. */
  async ping(from: string, ip: string, options: { count?: number; timeoutMs?: number } = {}): Promise<PingResult> {
    const ns = this.nsOf(from);
    const count = options.count ?? 1;
    const seconds = Math.max(1, Math.ceil((options.timeoutMs ?? 2000) / 1000));
    let output: string;
    try {
      const r = await this.box.exec(ns, 'ping', ['-n', '-c', String(count), '-i', '0.2', '-w', String(seconds), ip], { timeoutMs: seconds * 1000 + 5000 });
      output = r.stdout + r.stderr;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      output = `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message;
    }
    const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
    const sent = m ? Number(m[1]) : 0;
    const received = m ? Number(m[2]) : 0;
    return { ok: received >= count, sent, received, output: output.trim() };
  }

  /**
   * One ping (within timeoutMs, default 2 s) from every pod to every other node's pod, and from the
   * gateway namespace to every pod, all at once.
   */
  async matrix(options: { timeoutMs?: number } = {}): Promise<Matrix> {
    const nodes = this.nodes;
    const pairs: Array<{ from: string; fromNs: string; to: ClusterNode }> = [];
    for (const a of nodes) for (const b of nodes) if (a !== b) pairs.push({ from: a.name, fromNs: a.podNs, to: b });
    const gw = this.gateway;
    if (gw) for (const b of nodes) pairs.push({ from: gw.name, fromNs: gw.ns, to: b });
    const cells = await Promise.all(
      pairs.map(async (p) => ({ from: p.from, to: p.to.name, ip: p.to.podIp, ok: (await this.ping(p.fromNs, p.to.podIp, { timeoutMs: options.timeoutMs ?? 2000 })).ok })),
    );
    const failed = cells.filter((c) => !c.ok);
    const rows = [...nodes.map((n) => n.name), ...(gw ? [gw.name] : [])];
    const width = Math.max(10, ...rows.map((r) => r.length + 2));
    const lines = [`${'from \\ to'.padEnd(width)}${nodes.map((n) => n.name.padEnd(width)).join('')}`];
    for (const r of rows) {
      lines.push(
        `${r.padEnd(width)}${nodes
          .map((n) => (n.name === r ? '-' : cells.find((c) => c.from === r && c.to === n.name)?.ok ? 'ok' : 'FAIL').padEnd(width))
          .join('')}`,
      );
    }
    return { cells, ok: failed.length === 0, failed, table: lines.join('\n') };
  }

  /** matrix() until every cell is ok; the error carries the last table and the agents' log tails. */
  async waitForMatrix(options: { timeoutMs?: number } = {}): Promise<Matrix> {
    let last: Matrix | undefined;
    try {
      return await this.waitFor(
        'every pod to reach every other pod (and the gateway every pod)',
        async () => {
          last = await this.matrix();
          return last.ok ? last : false;
        },
        { timeoutMs: options.timeoutMs ?? 30_000, intervalMs: 100 },
      );
    } catch (err) {
      if (last && err instanceof Error) err.message = `${err.message.split('\n')[0]}\n${last.table}\n${err.message.split('\n').slice(1).join('\n')}`;
      throw err;
    }
  }

  /** A hashed TCP transfer from a pod (or the gateway namespace, for 'gateway') to a node's pod (sandbox/tcp.ts). */
  async tcp(from: string, to: string, bytes: number, options: { port?: number } = {}): Promise<TransferResult> {
    const source = this.member(from);
    const target = this.node(to);
    return tcpTransfer(this.box, { ns: source.role === 'node' ? source.podNs : source.ns }, { ns: target.podNs, ip: target.podIp }, bytes, options.port);
  }

  /**
   * Capture on the underlay bridge (tcpdump in the underlay namespace). Resolves once tcpdump
   * listens; stop() returns the decoded packets, each with tcpdump's own one-line reading.
   */
  async startCapture(options: CaptureOptions = {}): Promise<Capture> {
    this.assertRunning();
    const file = join(this.dir, `capture-${++this.captureCount}.pcap`);
    const args = ['-i', this.underlay.bridge, '-nn', '-U', '--immediate-mode', '-Z', 'root', '-s', '0', '-w', file, ...(options.filter ?? [])];
    const child = spawn('ip', ['netns', 'exec', this.underlay.ns, 'tcpdump', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.box.track(child);
    const proc = procOf(child);
    this.captures.add(proc);
    let stderr = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`tcpdump did not start listening within 10 s: ${stderr.trim()}`)), 10_000);
      child.stderr?.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
        if (/listening on/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
      void proc.exited.then((e) => {
        clearTimeout(timer);
        reject(new Error(`tcpdump exited (${describeExit(e)}) before listening: ${stderr.trim()}`));
      });
    }).catch(async (err: unknown) => {
      this.captures.delete(proc);
      await terminate(proc, 'SIGKILL', 0);
      throw err;
    });
    let result: Promise<CapturedPacket[]> | undefined;
    const stop = (): Promise<CapturedPacket[]> => {
      result ??= (async () => {
        await terminate(proc, 'SIGINT', 5000);
        this.captures.delete(proc);
        const packets = parsePcap(await readFile(file).catch(() => Buffer.alloc(0)));
        if (packets.length > 0) {
          try {
            const { stdout } = await execFileAsync('tcpdump', ['-r', file, '-nn', '-tt', '-v'], { maxBuffer: 256 * 1024 * 1024 });
            const lines = tcpdumpSummaries(stdout);
            if (lines.length === packets.length) packets.forEach((p, i) => (p.summary = lines[i]));
          } catch {
            /* summaries are a convenience */
          }
        }
        return packets;
      })();
      return result;
    };
    return { file, stop };
  }

  // ---------------------------------------------------------------- teardown

  /**
   * Tear everything down: agents (SIGTERM, SIGKILL after 10 s), sidecars and captures, any
   * wireguard-go still serving one of our interfaces, then our processes by pid, our namespaces,
   * the host veth, the API server, stale sockets of our interfaces, the temp dir. Idempotent.
   */
  async stop(): Promise<StopReport> {
    const t0 = performance.now();
    if (this.stopped) return { forced: [], ms: 0, steps: {} };
    this.stopped = true;
    const forced: string[] = [];
    const steps: Record<string, number> = {};
    let mark = t0;
    const step = (name: string) => {
      const now = performance.now();
      steps[name] = now - mark;
      mark = now;
    };
    await Promise.all(
      [...this.members.values()].map(async (s) => {
        if (!s.agent || s.agent.exit) return;
        const exit = await terminate(s.agent, 'SIGTERM', 10_000);
        if (exit.forced) forced.push(s.member.name);
      }),
    );
    step('agents');
    await Promise.all([
      ...[...this.members.values()].map((s) => (s.sidecar ? terminate(s.sidecar, 'SIGTERM', 5000) : undefined)),
      ...[...this.captures].map((p) => terminate(p, 'SIGTERM', 3000)),
    ]);
    this.captures.clear();
    await killPids(wireguardGoPids(this.interfaceNames()).map((p) => p.pid), 3000);
    step('sidecars');
    await this.box.cleanup();
    deleteLink(this.underlay.hostInterface);
    step('namespaces');
    // A throwaway API server needs no graceful shutdown (kube-apiserver takes its 3 s grace otherwise).
    await this.kube?.stopApiServer({ graceMs: 300 });
    await this.kube?.stop();
    step('apiServer');
    this.removeSockets();
    if (!this.keepLogs) await rm(this.dir, { recursive: true, force: true });
    releaseUnderlay(this.reservation);
    live.delete(this);
    step('files');
    const ms = performance.now() - t0;
    this.log(`torn down in ${Math.round(ms)} ms${forced.length ? ` (SIGKILLed: ${forced.join(', ')})` : ''}`);
    return { forced, ms, steps };
  }

  /** For exit and signal hooks: the same as stop(), synchronously, with shorter grace periods. */
  cleanupSync(): void {
    if (!live.has(this)) return;
    this.stopped = true;
    const agents = [...this.members.values()].map((s) => s.agent).filter((p): p is Proc => !!p && running(p));
    signalAll(agents, 'SIGTERM');
    waitGone(agents.map((p) => p.pid), 3000);
    signalAll(agents.filter(running), 'SIGKILL');
    const others = [...[...this.members.values()].map((s) => s.sidecar), ...this.captures].filter((p): p is Proc => !!p && running(p));
    signalAll(others, 'SIGTERM');
    waitGone(others.map((p) => p.pid), 1000);
    const wg = wireguardGoPids(this.interfaceNames()).map((p) => p.pid);
    for (const pid of wg) signalPid(pid, 'SIGTERM');
    waitGone(wg, 2000);
    for (const pid of wg.filter(isRunning)) signalPid(pid, 'SIGKILL');
    this.box.cleanupSync();
    deleteLink(this.underlay.hostInterface);
    this.kube?.cleanupSync();
    this.removeSockets();
    if (!this.keepLogs) rmSync(this.dir, { recursive: true, force: true });
    releaseUnderlay(this.reservation);
    live.delete(this);
  }

  /** Every WireGuard interface name this cluster uses (its sockets are /var/run/wireguard/<name>.sock). */
  interfaceNames(): string[] {
    return [...this.members.values()].map((s) => s.member.interfaceName);
  }

  // ---------------------------------------------------------------- building blocks

  private state(name: string): MemberState {
    const s = this.members.get(name);
    if (!s) throw new Error(`no member ${name} in this cluster (members: ${[...this.members.keys()].join(', ')})`);
    return s;
  }

  private nsOf(nameOrNs: string): string {
    return this.members.get(nameOrNs)?.member.ns ?? nameOrNs;
  }

  private assertRunning(): void {
    if (this.stopped) throw new Error('this cluster was stopped');
  }

  private async buildUnderlay(): Promise<void> {
    const u = this.underlay;
    await this.box.addNamespace('ul');
    await sysctl(u.ns, { 'net.ipv6.conf.all.disable_ipv6': '1', 'net.ipv6.conf.default.disable_ipv6': '1' });
    await this.box.ip(u.ns, 'link', 'add', u.bridge, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0');
    await this.box.ip(u.ns, 'link', 'set', u.bridge, 'up');
    // The host's end: the only thing of ours outside our namespaces (removed by name at stop).
    const port = this.box.ifName('ub', 'h');
    await execFileAsync('ip', ['link', 'add', u.hostInterface, 'type', 'veth', 'peer', 'name', port, 'netns', u.ns]);
    try {
      writeFileSync(`/proc/sys/net/ipv6/conf/${u.hostInterface}/disable_ipv6`, '1');
    } catch {
      /* no IPv6 on this host */
    }
    await execFileAsync('ip', ['addr', 'add', `${u.hostIp}/24`, 'dev', u.hostInterface]);
    await execFileAsync('ip', ['link', 'set', u.hostInterface, 'up']);
    await this.box.ip(u.ns, 'link', 'set', port, 'master', u.bridge, 'up');
  }

  /** A veth from `ns` into the bridge, with `address` on the namespace's end. */
  private async underlayPort(ns: string, suffix: string, address: string): Promise<string> {
    const inside = this.box.ifName('ul', suffix);
    const port = this.box.ifName('ub', suffix);
    await execFileAsync('ip', ['link', 'add', inside, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', this.underlay.ns]);
    await this.box.ip(this.underlay.ns, 'link', 'set', port, 'master', this.underlay.bridge, 'up');
    await sysctl(ns, { [`net.ipv6.conf.${inside}.disable_ipv6`]: '1' });
    await this.box.ip(ns, 'addr', 'add', address, 'dev', inside);
    await this.box.ip(ns, 'link', 'set', inside, 'up');
    return inside;
  }

  private memberBase(name: string, role: 'node' | 'gateway', ns: string, suffix: string, underlayIp: string, underlayInterface: string, wireguard: WireguardMode): ClusterMember {
    const interfaceName = this.box.ifName('wg', suffix);
    const keyFile = join(this.dir, 'keys', `${name}.key`);
    const privateKey = generatePrivateKey();
    writePrivateKeyFile(keyFile, privateKey);
    const streamToken = randomBytes(24).toString('base64url');
    const streamTokenFile = join(this.dir, 'keys', `${name}.stream-token`);
    writeFileSync(streamTokenFile, `${streamToken}\n`, { mode: 0o600 });
    const kubeconfig = this.source === 'kube' ? join(this.dir, `kubeconfig-${name}`) : undefined;
    return {
      name,
      role,
      ns,
      underlayIp,
      underlayInterface,
      interfaceName,
      socketPath: join(SOCKET_DIR, `${interfaceName}.sock`),
      listenPort: this.listenPort,
      endpoint: `${underlayIp}:${this.listenPort}`,
      keyFile,
      publicKey: publicKeyOf(privateKey),
      metricsAddress: `${underlayIp}:${METRICS_PORT}`,
      streamAddress: `${underlayIp}:${STREAM_PORT}`,
      streamUrl: `ws://${underlayIp}:${STREAM_PORT}/stream`,
      streamToken,
      streamTokenFile,
      wireguard,
      ...(kubeconfig ? { user: userOf(name), kubeconfig } : {}),
      logFile: join(this.dir, `${name}.log`),
      ...(wireguard === 'attach' ? { sidecarLogFile: join(this.dir, `${name}.wireguard-go.log`) } : {}),
    };
  }

  private async buildNode(i: number, wireguard: WireguardMode): Promise<ClusterNode> {
    const name = nodeNameOf(i);
    const ns = await this.box.addNamespace(`n${i}`);
    const podNs = await this.box.addNamespace(`p${i}`);
    const underlayIp = `${this.underlay.prefix}.${i + 1}`;
    const node: ClusterNode = {
      ...this.memberBase(name, 'node', ns, `n${i}`, underlayIp, this.box.ifName('ul', `n${i}`), wireguard),
      role: 'node',
      index: i,
      podNs,
      podIp: `10.244.${i}.2`,
      podGatewayIp: `10.244.${i}.1`,
      podCIDR: `10.244.${i}.0/24`,
    };
    this.members.set(name, { member: node, lastStart: {} });
    await sysctl(ns, { 'net.ipv4.ip_forward': '1', 'net.ipv4.conf.all.rp_filter': '2', 'net.ipv4.conf.default.rp_filter': '2' });
    await this.underlayPort(ns, `n${i}`, `${underlayIp}/24`);
    const nodeSide = this.box.ifName('po', String(i));
    const podSide = this.box.ifName('pd', String(i));
    await execFileAsync('ip', ['link', 'add', nodeSide, 'netns', ns, 'type', 'veth', 'peer', 'name', podSide, 'netns', podNs]);
    await this.box.ip(ns, 'addr', 'add', `${node.podGatewayIp}/24`, 'dev', nodeSide);
    await this.box.ip(podNs, 'addr', 'add', `${node.podIp}/24`, 'dev', podSide);
    await this.box.ip(ns, 'link', 'set', nodeSide, 'up');
    await this.box.ip(podNs, 'link', 'set', podSide, 'up');
    await this.box.ip(podNs, 'route', 'add', 'default', 'via', node.podGatewayIp);
    return node;
  }

  private async buildGateway(wireguard: WireguardMode): Promise<ClusterGateway> {
    const ns = await this.box.addNamespace('gw');
    const underlayIp = `${this.underlay.prefix}.${GATEWAY_OCTET}`;
    const gw: ClusterGateway = {
      ...this.memberBase('gateway', 'gateway', ns, 'gw', underlayIp, this.box.ifName('ul', 'gw'), wireguard),
      role: 'gateway',
      podCIDRs: [...this.gatewayPodCIDRs],
    };
    this.members.set(gw.name, { member: gw, lastStart: {} });
    await sysctl(ns, { 'net.ipv4.conf.all.rp_filter': '2', 'net.ipv4.conf.default.rp_filter': '2' });
    await this.underlayPort(ns, 'gw', `${underlayIp}/24`);
    return gw;
  }

  /** RBAC for the member's user (the shipped ClusterRole), its kubeconfig, and for a node its Node object (tainted: not ready). */
  private async registerKube(m: ClusterMember, notReadyTaint = false): Promise<void> {
    const kube = this.kube as TestCluster;
    await grantShippedRole(kube, m.role === 'node' ? 'agent' : 'gateway', m.user as string);
    await kube.writeKubeconfig(m.kubeconfig as string, m.user, { server: kube.server });
    if (m.role === 'node') {
      const node = m as ClusterNode;
      const admin = kube.kubeConfig('admin', { server: kube.server });
      await createNode(admin, node.name, [node.podCIDR], node.underlayIp);
      if (notReadyTaint) {
        await admin.makeApiClient(k8s.CoreV1Api).patchNode(
          { name: node.name, body: { spec: { taints: [{ key: NOT_READY_TAINT.key, effect: NOT_READY_TAINT.effect }] } } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        );
      }
    }
  }

  private writeNodeFile(node: ClusterNode): void {
    this.writePeersFile(`node.${node.name}.yaml`, [
      {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: node.name },
        spec: { podCIDR: node.podCIDR, podCIDRs: [node.podCIDR] },
        status: { addresses: [{ type: 'InternalIP', address: node.underlayIp }] },
      },
    ]);
  }

  private spawnLogged(ns: string, argv: string[], logFile: string, what: string, env: Record<string, string>): Proc {
    const fd = openSync(logFile, 'a', 0o644);
    let child: ChildProcess;
    try {
      writeSync(fd, `=== ${new Date().toISOString()} e2e cluster: starting ${what} in ${ns}: ${argv.join(' ')}\n`);
      // --pdeathsig: the kernel sends SIGTERM if the test process dies without running any hook.
      const wrapped = SETPRIV ? [SETPRIV, '--pdeathsig', 'SIGTERM', '--', ...argv] : argv;
      child = spawn('ip', ['netns', 'exec', ns, ...wrapped], { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    } finally {
      closeSync(fd);
    }
    this.box.track(child);
    return procOf(child);
  }

  private removeSockets(): void {
    for (const name of this.interfaceNames()) {
      try {
        unlinkSync(join(SOCKET_DIR, `${name}.sock`));
      } catch {
        /* gone (wireguard-go removes it on a clean exit) */
      }
    }
  }
}

// ---------------------------------------------------------------- helpers

export function nodeNameOf(index: number): string {
  return `node-${index}`;
}

function userOf(memberName: string): string {
  return memberName === 'gateway' ? 'gateway' : `agent-${memberName}`;
}

function procOf(child: ChildProcess): Proc {
  if (child.pid === undefined) throw new Error(`could not start ${child.spawnargs.join(' ')}`);
  const proc: Proc = { child, pid: child.pid, expected: false, exited: undefined as unknown as Promise<AgentExit> };
  proc.exited = new Promise<AgentExit>((resolve) => {
    const done = (code: number | null, signal: NodeJS.Signals | null) => {
      proc.exit ??= { code, signal, forced: false };
      resolve(proc.exit);
    };
    child.once('exit', done);
    child.once('error', () => done(null, null));
  });
  return proc;
}

function running(p: Proc): boolean {
  return !p.exit && p.child.exitCode === null && p.child.signalCode === null;
}

/** Signal a process we started, wait for it; SIGKILL after graceMs (then `forced`). */
async function terminate(p: Proc, signal: NodeJS.Signals, graceMs: number): Promise<AgentExit> {
  p.expected = true;
  if (!running(p)) return p.exited;
  signalPid(p.pid, signal);
  if (signal === 'SIGKILL') return p.exited;
  let forced = false;
  const timer = setTimeout(() => {
    forced = true;
    signalPid(p.pid, 'SIGKILL');
  }, graceMs);
  const exit = await p.exited;
  clearTimeout(timer);
  if (forced) exit.forced = true;
  return exit;
}

function signalAll(procs: Proc[], signal: NodeJS.Signals): void {
  for (const p of procs) {
    p.expected = true;
    signalPid(p.pid, signal);
  }
}

function waitGone(pids: number[], ms: number): void {
  const deadline = Date.now() + ms;
  while (pids.some(isRunning) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
}

/** SIGTERM processes that are not our children (found by /proc scan), SIGKILL after graceMs. */
async function killPids(pids: number[], graceMs: number): Promise<void> {
  for (const pid of pids) signalPid(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some(isRunning) && Date.now() < deadline) await sleep(20);
  for (const pid of pids.filter(isRunning)) signalPid(pid, 'SIGKILL');
}

function describeExit(e: AgentExit): string {
  return e.signal ? `signal ${e.signal}` : e.code === null ? 'could not start' : `code ${e.code}`;
}

function deleteLink(name: string): void {
  try {
    execFileSync('ip', ['link', 'del', name], { stdio: 'ignore' });
  } catch {
    /* never created, or already gone */
  }
}

async function sysctl(ns: string, settings: Record<string, string>): Promise<void> {
  await execFileAsync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)]);
}

/** The network namespace id ('net:[4026532...]') of a named namespace, from its bind mount. */
function netnsId(ns: string): string | undefined {
  try {
    return `net:[${statSync(join('/run/netns', ns)).ino}]`;
  } catch {
    return undefined;
  }
}

function processNetns(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/**
 * Live processes whose command line is exactly `<...>/wireguard-go -f <name>` for one of `names`
 * (our own interface names only, never a pattern).
 */
export function wireguardGoPids(names: string[]): Array<{ pid: number; interfaceName: string }> {
  const wanted = new Set(names);
  const found: Array<{ pid: number; interfaceName: string }> = [];
  if (wanted.size === 0) return found;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (argv[argv.length - 1] === '') argv.pop();
    if (argv.length !== 3 || basename(argv[0]) !== 'wireguard-go' || argv[1] !== '-f' || !wanted.has(argv[2])) continue;
    const pid = Number(entry);
    if (isRunning(pid)) found.push({ pid, interfaceName: argv[2] });
  }
  return found;
}

// ---------------------------------------------------------------- underlay subnet

/**
 * Routes and addresses of the host (every table) that overlap `cidr`, ignoring default routes: a
 * candidate underlay subnet must have none, or traffic to it could leave our namespaces.
 */
export async function hostRoutesOverlapping(cidr: string): Promise<string[]> {
  const [routes, addrs] = await Promise.all([
    execFileAsync('ip', ['-j', '-4', 'route', 'show', 'table', 'all']),
    execFileAsync('ip', ['-j', '-4', 'addr', 'show']),
  ]);
  const out: string[] = [];
  for (const r of JSON.parse(routes.stdout || '[]') as Array<{ dst?: string; dev?: string; table?: string }>) {
    if (!r.dst || r.dst === 'default') continue;
    const dst = r.dst.includes('/') ? r.dst : `${r.dst}/32`;
    if (/^[\d.]+\/\d+$/.test(dst) && cidrOverlaps(dst, cidr)) out.push(`route ${r.dst} dev ${r.dev ?? '?'} table ${r.table ?? 'main'}`);
  }
  for (const link of JSON.parse(addrs.stdout || '[]') as Array<{ ifname: string; addr_info?: Array<{ local: string; prefixlen: number }> }>) {
    for (const a of link.addr_info ?? []) {
      if (cidrOverlaps(`${a.local}/${a.prefixlen}`, cidr)) out.push(`address ${a.local}/${a.prefixlen} on ${link.ifname}`);
    }
  }
  return out;
}

/** Pick X in 1..254 at random such that 198.18.X.0/24 overlaps nothing on the host, and reserve it for this process. */
async function reserveUnderlay(): Promise<{ octet: number; file: string }> {
  mkdirSync(UNDERLAY_RESERVATIONS, { recursive: true, mode: 0o755 });
  const candidates = Array.from({ length: 254 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
  for (const octet of candidates) {
    const file = join(UNDERLAY_RESERVATIONS, String(octet));
    if (!claimPidFile(file)) continue;
    if ((await hostRoutesOverlapping(`198.18.${octet}.0/24`)).length === 0) return { octet, file };
    releaseUnderlay(file);
  }
  throw new Error('no free 198.18.X.0/24 underlay subnet: every one overlaps a route or address on this host, or is reserved by another run');
}


function releaseUnderlay(path: string): void {
  try {
    if (readFileSync(path, 'utf8') === String(process.pid)) unlinkSync(path);
  } catch {
    /* already gone */
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export { formatPacket } from './pcap.ts';
export { tailOf } from './proc.ts';
export type { CapturedPacket, PacketProtocol, WireguardMessage } from './pcap.ts';

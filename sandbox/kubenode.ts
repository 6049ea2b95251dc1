/**
 * Real Kubernetes nodes on one machine (issue 11, "A real node"): kubelet 1.20.2 with containerd 1.6,
 * kube-proxy (iptables mode), a controller-manager and a scheduler, against the sandbox's API server,
 * each node in a network namespace on the sandbox underlay and in a private mount namespace of its own.
 *
 *   const real = await RealNodeCluster.start({ nodes: 2, images: [archive] });   // or { mesh } to join one
 *   try {
 *     await real.kubectl(['apply', '-f', '-'], { input: yaml });
 *     const r = await real.nodes[0].exec('ip', ['route']);                     // in the node's net + mount ns
 *   } finally {
 *     await real.stop();
 *   }
 *
 * FOR N2 (e2e/realnode.test.ts), what works and how to use it:
 * - `RealNodeCluster.start({ nodes, mesh?, images?, log?, keepLogs? })`. Without `mesh` it starts its
 *   own MeshCluster with no namespace nodes (the underlay and the API server only) and stops it again.
 *   With `mesh`, start that MeshCluster with `RealNodeCluster.meshOptions()` spread into its options
 *   (the ServiceAccount admission plugin must run, so pods get their token; kubectl logs/exec must dial
 *   kubelets by InternalIP, as no DNS resolves their names); `crds: false` there if a
 *   Helm chart installs the CRDs. The real nodes join its bridge and its API server; stop() leaves the
 *   mesh running (its owner stops it).
 * - `api` is the TestCluster; `kubeconfigPath` an admin kubeconfig file (for helm and kubectl: its
 *   server is https://<underlay host IP>:<port>, reachable from the host and from every node);
 *   `kubectl(args, { input })` runs kubectl as admin.
 * - `nodes[i]`: name `real-<i>`, underlayIP 198.18.X.(200+i), podCIDR 10.244.(200+i).0/24 (inside the
 *   10.244.0.0/16 that MeshCluster's nodes and its gateway use; MeshCluster's own nodes take
 *   10.244.0-98), netns (a name under /run/netns), `exec(cmd, args)` inside the node's network AND
 *   mount namespaces (never throws: { stdout, stderr, code }), logsDir (containerd.log, kubelet.log,
 *   kube-proxy.log; pod logs under logsDir/pods), containerdSocket (inside the node's mount namespace:
 *   `node.exec('ctr', ['--address', node.containerdSocket, '-n', 'k8s.io', ...])`).
 * - The nodes' Node objects carry the labels kubelet sets (kubernetes.io/os=linux, hostname, arch);
 *   MeshCluster's Node objects carry none, so a DaemonSet with the chart's Linux nodeSelector lands
 *   only on real nodes (without a selector it would wait forever for pods on kubelet-less nodes).
 * - Every real node routes the other real nodes' pod CIDRs via their underlay IPs (a cloud's route
 *   table); pods reach pods on the other node over those plain routes. `addClearRoutesWithMesh()`
 *   adds the same between real nodes and the MeshCluster's namespace nodes (both ways; remove()). Pod traffic to anything outside
 *   10.244.0.0/16 is masqueraded to the node's IP (so a pod reaches the API server through the
 *   `kubernetes` Service, whose endpoint this harness writes: the API server runs with
 *   --endpoint-reconciler-type=none).
 * - A new namespace's `default` ServiceAccount (and its token) appears a moment after the namespace:
 *   `waitForServiceAccount(ns)` before creating bare pods there (controllers just retry). start()
 *   waits for default/default.
 * - Images: `images` (docker-archive paths) are imported into every node's containerd (k8s.io
 *   namespace) before kubelet starts; `importImage(archive)` adds one later. Use imagePullPolicy Never
 *   or IfNotPresent: no registry is reachable. Image garbage collection is off.
 * - kubelet and kube-proxy authenticate as the API server's admin (system:masters) token user, and
 *   kubelet's own API (10250, on the node's underlay IP) allows anonymous requests, so `kubectl logs`,
 *   `exec` and `port-forward` work: test-harness shortcuts (no TLS bootstrap, no node authorizer).
 * - stop() (also from exit and signal hooks) kills every process of ours by pid: kube-proxy, kubelet,
 *   every process in the nodes' pod cgroups and in the nodes' mount namespaces (containerd, shims,
 *   containers), the mount-namespace holders; removes our cgroups, namespaces and temp dir; restores
 *   the global sysctls kubelet changes (vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
 *   kernel.panic_on_oops, kernel.keys.root_max*) once the last run that uses real nodes on this machine
 *   is done. What a SIGKILLed run leaves is swept by the next start() (sweepStaleRuns): each run
 *   records what it made, and holds its sysctl claim, under /run/aks-mesh (root's only, 0700).
 *   iptables: kubelet's and kube-proxy's chains live in the nodes' network namespaces and go with
 *   them; the host's tables are not touched.
 *
 * Why a private mount namespace per node: two kubelets sharing one delete each other's /var/log/pods
 * and device-plugin socket. Each node's holder process (`unshare --mount --propagation private`) mounts
 * a tmpfs on /run (so /run/containerd, /var/run/wireguard, /run/netns, /run/xtables.lock are the
 * node's own, as on a machine) and the node's log dir on /var/log; kubelet's root, containerd's root,
 * the CNI configuration and IPAM data are per-node directories given by flags; the node's cgroups live
 * under a cgroup root of its own. Processes enter with `nsenter --target <holder> --mount --net`
 * (not `ip netns exec`, which remounts /sys).
 *
 * The binaries: sandbox/build-node.sh (kubelet, kube-proxy, kube-controller-manager, kube-scheduler),
 * sandbox/build-apiserver.sh (kube-apiserver), sandbox/node/build-images.sh (the pause image),
 * Debian's containerd, runc and CNI plugins (/usr/lib/cni).
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, constants as fsConstants, existsSync, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, rmdirSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { constants as osConstants, homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { KUBERNETES_SERVICE_IP, kubeTestsUnavailable } from './apiserver.ts';
import type { KubectlResult, TestCluster } from './apiserver.ts';
import { MeshCluster } from './cluster.ts';
import type { MeshClusterOptions } from './cluster.ts';
import { isRunning, signalPid, tailOf } from './proc.ts';
import { Sandbox } from './sandbox.ts';

const execFileAsync = promisify(execFile);

export const KUBE_NODE_VERSION = '1.20.2';
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Where build-images.sh is. */
export const BUILD_IMAGES = join(REPO_ROOT, 'sandbox', 'node', 'build-images.sh');
/** The pause image containerd runs for every pod sandbox (built by build-images.sh). */
export const PAUSE_IMAGE = 'k8s.gcr.io/pause:3.2';
/** Debian's CNI plugins. */
export const CNI_BIN_DIR = '/usr/lib/cni';
/** The CIDR every pod of the sandbox lives in (MeshCluster's nodes, its gateway's --pod-cidr, real nodes). */
export const CLUSTER_CIDR = '10.244.0.0/16';
/** Real node i: underlay 198.18.X.(FIRST_OCTET+i), pod CIDR 10.244.(FIRST_OCTET+i).0/24. */
export const FIRST_OCTET = 200;
/** The host's address on the underlay is .254: room for 50 real nodes. */
export const MAX_REAL_NODES = 50;
/**
 * The harness's machine-wide state: run records (RUN_RECORDS) and the host sysctl claims
 * (SYSCTL_DIR). Root acts on what it finds there (kills by cgroup, deletes namespaces, links and
 * directories, writes /proc/sys), so it lives under /run (not the world-writable /tmp), mode 0700,
 * and a directory or file that is a symlink, not ours, or writable by group or others is refused;
 * each record is checked against the names this harness makes before anything is done with it.
 */
export const STATE_DIR = '/run/aks-mesh';
const CONTAINERD_SOCKET = '/run/containerd/containerd.sock';
const NOT_READY_TAINT = 'node.kubernetes.io/not-ready';

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

function cacheRoot(): string {
  return process.env.AKS_MESH_CACHE ?? join(process.env.HOME ?? homedir(), '.cache', 'aks-mesh');
}

/** Where sandbox/build-node.sh puts kubelet, kube-proxy, kube-controller-manager and kube-scheduler. */
export function kubeNodeBinDir(): string {
  return process.env.AKS_MESH_KUBE_NODE_BIN ?? join(cacheRoot(), `kube-node-${KUBE_NODE_VERSION}`, 'bin');
}

/**
 * Why real nodes cannot run here, or null: the API server's needs (kubeTestsUnavailable), the node
 * binaries, containerd, runc, ctr, the CNI plugins, iptables, nsenter/unshare, cgroup v1. Under
 * AKS_MESH_REQUIRE_KUBE=1 a missing part throws (a failure, never a silent skip).
 */
export function realNodesUnavailable(): string | null {
  const why = kubeTestsUnavailable() ?? realNodesMissing();
  if (why && process.env.AKS_MESH_REQUIRE_KUBE === '1') throw new Error(`real nodes required but unavailable: ${why}`);
  return why;
}

function realNodesMissing(): string | null {
  const bin = kubeNodeBinDir();
  for (const b of ['kubelet', 'kube-proxy', 'kube-controller-manager', 'kube-scheduler']) {
    if (!existsSync(join(bin, b))) return `${join(bin, b)} is missing: build it once with sandbox/build-node.sh (about 9 minutes, cached)`;
  }
  for (const [tool, pkg] of [
    ['containerd', 'containerd'],
    ['ctr', 'containerd'],
    ['runc', 'runc'],
    ['iptables', 'iptables'],
    ['nsenter', 'util-linux'],
    ['unshare', 'util-linux'],
    ['conntrack', 'conntrack'],
  ] as const) {
    if (!onPath(tool)) return `needs ${tool} (apt-get install ${pkg})`;
  }
  if (!existsSync(join(CNI_BIN_DIR, 'bridge')) || !existsSync(join(CNI_BIN_DIR, 'host-local'))) return `needs the CNI plugins in ${CNI_BIN_DIR} (apt-get install containernetworking-plugins)`;
  if (!existsSync('/sys/fs/cgroup/memory')) return 'needs cgroup v1 (kubelet 1.20 with cgroupfs): /sys/fs/cgroup/memory is missing';
  return null;
}

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').some((d) => d && existsSync(join(d, tool)));
}

export interface RealNodeClusterOptions {
  /** How many real nodes (1..50), named real-0, real-1, ... */
  nodes: number;
  /** Join this MeshCluster's underlay bridge and API server (start it with RealNodeCluster.meshOptions()); default: a MeshCluster of our own with no namespace nodes. */
  mesh?: MeshCluster;
  /** docker-archive paths imported into every node's containerd (k8s.io namespace) before kubelet starts. */
  images?: string[];
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Keep the temp dir (logs, configs) after stop() (default: $AKS_MESH_KEEP_LOGS === '1'). */
  keepLogs?: boolean;
  /** How long to wait for every node to be Ready (default 120 s). */
  readyTimeoutMs?: number;
}

export interface ExecResult {
  /** Exit code; 128 + signal number when killed (e.g. by the timeout). */
  code: number;
  stdout: string;
  stderr: string;
}

export interface RealNode {
  /** The Node name (also kubelet's --hostname-override). */
  name: string;
  index: number;
  /** Its address on the underlay (kubelet --node-ip, the Node's InternalIP). */
  underlayIP: string;
  /** The veth into the underlay bridge, inside netns. */
  underlayInterface: string;
  /** The Node's spec.podCIDR (the CNI bridge's host-local range). */
  podCIDR: string;
  /** Its network namespace: a name under /run/netns. */
  netns: string;
  /** The process holding the node's private mount namespace (nsenter --target it). */
  holderPid: number;
  /** kubelet's --cgroup-root: the node's pods live under /sys/fs/cgroup/<hierarchy><cgroupRoot>. */
  cgroupRoot: string;
  /** The node's own directory (configs, kubelet root, containerd root). */
  dir: string;
  /** containerd.log, kubelet.log, kube-proxy.log; the node's /var/log (pods/, containers/). */
  logsDir: string;
  /** containerd's socket, a path inside the node's mount namespace. */
  containerdSocket: string;
  /** Run a command inside the node's network and mount namespaces; never throws. */
  exec(command: string, args: string[], options?: { input?: string; timeoutMs?: number }): Promise<ExecResult>;
}

export interface RealNodeTimings {
  /** MeshCluster.start() when we own it. */
  meshMs: number;
  /** Namespaces, holders, containerd up and images imported, on every node (in parallel). */
  nodesMs: number;
  /** kubelet start until every Node is Ready. */
  readyMs: number;
  totalMs: number;
}

export interface RealNodeStopReport {
  ms: number;
  /** Processes that needed SIGKILL after SIGTERM (by role). */
  forced: string[];
  /** Host sysctls restored (name → value written), when this was the last run using real nodes. */
  restoredSysctls: Record<string, string>;
  /** Our cgroup directories that could not be removed (should be empty). */
  leftoverCgroups: string[];
}

interface Proc {
  child: ChildProcess;
  pid: number;
  role: string;
  exited: Promise<void>;
}

interface NodeState {
  node: RealNode;
  cgroupRoot: string;
  holder?: Proc;
  containerd?: Proc;
  kubelet?: Proc;
  proxy?: Proc;
}

const live = new Set<RealNodeCluster>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  // Prepended: our nodes must go before MeshCluster's and Sandbox's hooks remove the underlay and the API server.
  process.prependListener('exit', () => {
    for (const c of live) c.cleanupSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.prependListener(sig, () => {
      if (live.size === 0) return;
      for (const c of live) c.cleanupSync();
      // Exit as the signal would have, unless someone else handles it (the other harnesses' hooks run next).
      if (process.listenerCount(sig) === 1) process.exit(128 + (osConstants.signals[sig] ?? 0));
    });
  }
}

export class RealNodeCluster {
  /** The API server (the mesh's own). */
  readonly api: TestCluster;
  /** The MeshCluster whose underlay and API server we use (ours or the caller's). */
  readonly mesh: MeshCluster;
  readonly nodes: RealNode[] = [];
  /** Temp dir: configs, logs, node roots. */
  readonly dir: string;
  /** An admin kubeconfig file (for kubectl and helm). */
  readonly kubeconfigPath: string;
  readonly timings: RealNodeTimings = { meshMs: 0, nodesMs: 0, readyMs: 0, totalMs: 0 };

  private readonly box: Sandbox;
  private readonly ownMesh: boolean;
  private readonly states: NodeState[] = [];
  private readonly controlPlane: Proc[] = [];
  private readonly log: (line: string) => void;
  private readonly keepLogs: boolean;
  private readonly sysctlClaim: SysctlClaim;
  private stopped = false;

  private constructor(init: { mesh: MeshCluster; ownMesh: boolean; dir: string; box: Sandbox; options: RealNodeClusterOptions }) {
    if (!init.mesh.kube) throw new Error('mesh: a MeshCluster with an API server (source: kube) is needed');
    this.mesh = init.mesh;
    this.api = init.mesh.kube;
    this.ownMesh = init.ownMesh;
    this.dir = init.dir;
    this.box = init.box;
    this.kubeconfigPath = join(init.dir, 'kubeconfig-admin');
    this.log = init.options.log ?? (() => undefined);
    this.keepLogs = init.options.keepLogs ?? process.env.AKS_MESH_KEEP_LOGS === '1';
    this.sysctlClaim = new SysctlClaim(init.box.tag);
  }

  /** What a MeshCluster needs for real nodes to join it: spread into its options. */
  static meshOptions(): Pick<MeshClusterOptions, 'apiServer'> {
    // Kubelets register with their hostname first, which no DNS here resolves: logs/exec dial the InternalIP.
    return { apiServer: { serviceAccounts: true, extraArgs: ['--kubelet-preferred-address-types=InternalIP'] } };
  }

  /** Start the control plane's controllers and the nodes; resolves once every Node is Ready. Cleans up on failure. */
  static async start(options: RealNodeClusterOptions): Promise<RealNodeCluster> {
    const t0 = performance.now();
    const n = options.nodes;
    if (!Number.isInteger(n) || n < 1 || n > MAX_REAL_NODES) throw new Error(`nodes: ${n} is not between 1 and ${MAX_REAL_NODES}`);
    const missing = realNodesMissing();
    if (missing) throw new Error(`real nodes cannot run here: ${missing}`);
    for (const archive of options.images ?? []) if (!existsSync(archive)) throw new Error(`images: ${archive} does not exist`);
    if (options.mesh && !options.mesh.kube) throw new Error('mesh: that MeshCluster has no API server (source: dir); real nodes need one');
    if (options.mesh && !options.mesh.kube?.serviceAccounts) {
      throw new Error('mesh: its API server runs without the ServiceAccount admission plugin; start the MeshCluster with ...RealNodeCluster.meshOptions()');
    }
    const pause = await buildPauseImage();
    const mesh = options.mesh ?? (await MeshCluster.start({ nodes: 0, crds: false, ...RealNodeCluster.meshOptions(), log: options.log }));
    const meshMs = options.mesh ? 0 : performance.now() - t0;
    let cluster: RealNodeCluster | undefined;
    try {
      const dir = await mkdtemp(join(tmpdir(), 'aks-mesh-realnode-'));
      cluster = new RealNodeCluster({ mesh, ownMesh: !options.mesh, dir, box: new Sandbox(), options });
      cluster.timings.meshMs = meshMs;
      live.add(cluster);
      hookExit();
      const c = cluster;
      sweepStaleRuns(c.log);
      c.sysctlClaim.acquire();
      await c.api.writeKubeconfig(c.kubeconfigPath, 'admin');
      c.log(`real nodes: dir ${dir}, underlay ${mesh.underlay.subnet}, API server ${c.api.server}`);

      const t1 = performance.now();
      const images = [pause, ...(options.images ?? [])];
      const results = await Promise.allSettled([c.startControlPlane(), ...Array.from({ length: n }, (_, i) => c.startNodeBase(i, images))]);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      await c.addPodRoutes();
      c.timings.nodesMs = performance.now() - t1;

      const t2 = performance.now();
      for (const s of c.states) await c.startKubelet(s);
      await c.waitReady(options.readyTimeoutMs ?? 120_000);
      for (const s of c.states) c.startProxy(s);
      await c.waitForServiceAccount('default');
      c.timings.readyMs = performance.now() - t2;
      c.timings.totalMs = performance.now() - t0;
      c.log(`real nodes Ready in ${Math.round(c.timings.totalMs)} ms: ${c.nodes.map((x) => x.name).join(', ')}`);
      return c;
    } catch (err) {
      if (cluster) await cluster.stop().catch(() => undefined);
      else if (!options.mesh) await mesh.stop().catch(() => undefined);
      throw err;
    }
  }

  /** A node by name; throws naming the nodes when there is none. */
  node(name: string): RealNode {
    const found = this.nodes.find((x) => x.name === name);
    if (!found) throw new Error(`no real node ${name} (nodes: ${this.nodes.map((x) => x.name).join(', ')})`);
    return found;
  }

  /** A KubeConfig for the admin (or another token user of the API server). */
  kubeConfig(user = 'admin'): k8s.KubeConfig {
    return this.api.kubeConfig(user, { server: this.api.server });
  }

  /** kubectl as admin (never throws; see TestCluster.kubectl). */
  kubectl(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<KubectlResult> {
    return this.api.kubectl(args, options);
  }

  /**
   * Wait until a namespace's ServiceAccount exists with its token (the controller-manager makes both a
   * moment after the namespace): before that, the ServiceAccount admission plugin refuses pods that
   * use it. start() waits for default/default.
   */
  async waitForServiceAccount(namespace: string, name = 'default', timeoutMs = 60_000): Promise<void> {
    const core = this.kubeConfig().makeApiClient(k8s.CoreV1Api);
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const sa = await core.readNamespacedServiceAccount({ namespace, name }).catch(() => undefined);
      if ((sa?.secrets?.length ?? 0) > 0) return;
      if (performance.now() > deadline) {
        throw new Error(`ServiceAccount ${namespace}/${name}: ${sa ? 'no token secret' : 'not created'} after ${Math.round(timeoutMs / 1000)} s\n${tailOf(join(this.dir, 'kube-controller-manager.log'), 30)}`);
      }
      await sleep(200);
    }
  }

  /** Import a docker-archive into every node's containerd (k8s.io namespace). */
  async importImage(archive: string): Promise<void> {
    this.assertRunning();
    if (!existsSync(archive)) throw new Error(`importImage: ${archive} does not exist`);
    await Promise.all(this.states.map((s) => importInto(s.node, archive)));
  }

  /**
   * Clear routes between the real nodes and the MeshCluster's namespace nodes, both ways (each pod
   * CIDR via its node's underlay IP, in every other node's main table), as a cloud route table holds
   * for every node: what the mesh must never let pod traffic take, and what pod traffic falls back to
   * without the mesh. Real nodes route each other's pod CIDRs from the start; this adds the mixed
   * pairs. remove() takes out only what this call added.
   */
  async addClearRoutesWithMesh(): Promise<{ remove(): Promise<void> }> {
    this.assertRunning();
    const added: Array<[string, string, string]> = [];
    const add = async (ns: string, cidr: string, via: string) => {
      await execFileAsync('ip', ['-n', ns, 'route', 'add', cidr, 'via', via]);
      added.push([ns, cidr, via]);
    };
    const remove = async () => {
      for (const [ns, cidr, via] of added.splice(0)) await execFileAsync('ip', ['-n', ns, 'route', 'del', cidr, 'via', via]).catch(() => undefined);
    };
    try {
      for (const m of this.mesh.nodes) {
        for (const r of this.nodes) {
          await add(r.netns, m.podCIDR, m.underlayIp);
          await add(m.ns, r.podCIDR, r.underlayIP);
        }
      }
    } catch (err) {
      await remove();
      throw err;
    }
    return { remove };
  }

  /** The last lines of a node's containerd, kubelet and kube-proxy logs (and the controllers'). */
  logTail(name?: string, lines = 30): string {
    const nodes = name ? [this.node(name)] : this.nodes;
    const files = [
      ...nodes.flatMap((x) => ['containerd.log', 'kubelet.log', 'kube-proxy.log'].map((f) => join(x.logsDir, f))),
      ...(name ? [] : [join(this.dir, 'kube-controller-manager.log'), join(this.dir, 'kube-scheduler.log')]),
    ];
    return files.map((f) => `--- ${f} (last ${lines} lines)\n${tailOf(f, lines)}`).join('\n');
  }

  /**
   * Tear everything down (idempotent): kube-proxy and kubelet (SIGTERM), every process in the nodes'
   * cgroups and mount namespaces, the holders, the controllers; then our cgroups, namespaces, the mesh
   * if it is ours, the temp dir; the host sysctls kubelet changed once no other run uses real nodes.
   */
  async stop(): Promise<RealNodeStopReport> {
    const t0 = performance.now();
    if (this.stopped) return { ms: 0, forced: [], restoredSysctls: {}, leftoverCgroups: [] };
    this.stopped = true;
    const forced: string[] = [];
    const term = async (p: Proc | undefined, graceMs: number) => {
      if (p && (await terminate(p, graceMs))) forced.push(p.role);
    };
    await Promise.all(this.states.flatMap((s) => [term(s.proxy, 5000), term(s.kubelet, 5000)]));
    await Promise.all(this.controlPlane.map((p) => term(p, 5000)));
    for (const s of this.states) await killNodeProcesses(s, 3000);
    await Promise.all(this.states.map((s) => term(s.containerd, 3000)));
    await Promise.all(this.states.map((s) => term(s.holder, 1000)));
    const leftoverCgroups = this.states.flatMap((s) => removeCgroups(s.cgroupRoot));
    await this.box.cleanup();
    if (this.ownMesh) await this.mesh.stop();
    const restoredSysctls = this.sysctlClaim.release();
    if (!this.keepLogs) await rm(this.dir, { recursive: true, force: true, maxRetries: 5 });
    // Kept logs keep the logs and configs, not the images' layers nor the pods' volumes (keys among them).
    else for (const s of this.states) for (const d of ['containerd', 'kubelet']) await rm(join(s.node.dir, d), { recursive: true, force: true, maxRetries: 5 });
    rmSync(this.recordPath, { force: true });
    live.delete(this);
    const ms = performance.now() - t0;
    this.log(`real nodes torn down in ${Math.round(ms)} ms${forced.length ? ` (SIGKILLed: ${forced.join(', ')})` : ''}`);
    return { ms, forced, restoredSysctls, leftoverCgroups };
  }

  /** For exit and signal hooks: stop(), synchronously, with short grace periods. */
  cleanupSync(): void {
    if (!live.has(this)) return;
    this.stopped = true;
    const procs = (pick: (s: NodeState) => Proc | undefined) => this.states.map(pick).filter((p): p is Proc => !!p);
    const killWait = (ps: Proc[], graceMs: number) => {
      for (const p of ps) signalPid(p.pid, 'SIGTERM');
      waitGone(ps.map((p) => p.pid), graceMs);
      for (const p of ps) signalPid(p.pid, 'SIGKILL');
      waitGone(ps.map((p) => p.pid), 1000);
    };
    killWait([...procs((s) => s.proxy), ...procs((s) => s.kubelet), ...this.controlPlane], 2000);
    for (const s of this.states) killNodeProcessesSync(s);
    killWait([...procs((s) => s.containerd), ...procs((s) => s.holder)], 500);
    for (const s of this.states) removeCgroups(s.cgroupRoot);
    this.box.cleanupSync();
    if (this.ownMesh) this.mesh.cleanupSync();
    this.sysctlClaim.release();
    if (!this.keepLogs) rmSync(this.dir, { recursive: true, force: true });
    rmSync(this.recordPath, { force: true });
    live.delete(this);
  }

  // ---------------------------------------------------------------- building blocks

  /** This run's entry in RUN_RECORDS (what sweepStaleRuns needs should this process be SIGKILLed). */
  private get recordPath(): string {
    return join(RUN_RECORDS, `${process.pid}-${this.box.tag}.json`);
  }

  private record(): void {
    const record: RunRecord = {
      pid: process.pid,
      start: SELF_START,
      dir: this.dir,
      netns: this.nodes.filter(Boolean).map((n) => n.netns),
      cgroupRoots: this.nodes.filter(Boolean).map((n) => n.cgroupRoot),
      mountNamespaces: this.states.filter((st) => st?.holder).map((st) => readlinkOr(`/proc/${st.holder?.pid}/ns/mnt`)),
      // Our own MeshCluster's underlay and temp dirs (its API server dies with us by parent-death signal).
      ...(this.ownMesh ? { hostLinks: [this.mesh.underlay.hostInterface], extraNetns: [this.mesh.underlay.ns], extraDirs: [this.mesh.dir, this.api.dir] } : {}),
    };
    stateDir(RUN_RECORDS);
    writeStateFile(this.recordPath, JSON.stringify(record) + '\n');
  }

  private assertRunning(): void {
    if (this.stopped) throw new Error('these real nodes were stopped');
  }

  /** The `kubernetes` Service's endpoint (the reconciler is off), the controller-manager and the scheduler, on the host. */
  private async startControlPlane(): Promise<void> {
    await upsertKubernetesEndpoints(this.api, this.mesh.underlay.hostIp, this.api.port);
    const bin = kubeNodeBinDir();
    const common = [`--kubeconfig=${this.kubeconfigPath}`, '--leader-elect=false', '--port=0', '--secure-port=0', '--logtostderr=true', '--v=1'];
    this.controlPlane.push(
      this.spawnHost('kube-controller-manager', join(bin, 'kube-controller-manager'), [
        ...common,
        // Only what the cluster's workloads need. No nodelifecycle: MeshCluster's Node objects have no
        // kubelet and would be tainted unreachable (and their pods evicted).
        '--controllers=serviceaccount-token,serviceaccount,nodeipam,daemonset,deployment,replicaset,job,garbagecollector,namespace,endpoint,endpointslice,podgc',
        `--service-account-private-key-file=${this.api.serviceAccountKeyPath}`,
        `--root-ca-file=${this.api.caCertPath}`,
        '--use-service-account-credentials=false',
        '--allocate-node-cidrs=true',
        `--cluster-cidr=${CLUSTER_CIDR}`,
        '--node-cidr-mask-size=24',
        `--service-cluster-ip-range=${KUBERNETES_SERVICE_IP}/24`,
        '--concurrent-deployment-syncs=2',
      ]),
      this.spawnHost('kube-scheduler', join(bin, 'kube-scheduler'), common),
    );
  }

  /** Namespace, veth, holder, configs, containerd, images and the Node object of node i. */
  private async startNodeBase(i: number, images: string[]): Promise<void> {
    const u = this.mesh.underlay;
    const name = `real-${i}`;
    const octet = FIRST_OCTET + i;
    const netns = await this.box.addNamespace(`k${i}`);
    const dir = join(this.dir, name);
    const logsDir = join(dir, 'log');
    for (const d of ['log', 'kubelet', 'containerd', 'cni/net.d', 'cni/ipam']) mkdirSync(join(dir, d), { recursive: true, mode: 0o755 });
    const node: RealNode = {
      name,
      index: i,
      underlayIP: `${u.prefix}.${octet}`,
      underlayInterface: this.box.ifName('ul', `k${i}`),
      podCIDR: `10.244.${octet}.0/24`,
      netns,
      holderPid: 0,
      cgroupRoot: `/aks-mesh-${this.box.tag}-${name}`,
      dir,
      logsDir,
      containerdSocket: CONTAINERD_SOCKET,
      exec: (command, args, options = {}) => nodeExec(node, command, args, options),
    };
    const state: NodeState = { node, cgroupRoot: node.cgroupRoot };
    this.states[i] = state;
    this.nodes[i] = node;

    // The underlay: a veth into the mesh's bridge, as MeshCluster's own nodes have.
    const port = this.box.ifName('ub', `k${i}`);
    await execFileAsync('ip', ['link', 'add', node.underlayInterface, 'netns', netns, 'type', 'veth', 'peer', 'name', port, 'netns', u.ns]);
    await execFileAsync('ip', ['-n', u.ns, 'link', 'set', port, 'master', u.bridge, 'up']);
    await execFileAsync('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', `net.ipv6.conf.${node.underlayInterface}.disable_ipv6=1`, 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=2', 'net.ipv4.conf.default.rp_filter=2']);
    await execFileAsync('ip', ['-n', netns, 'addr', 'add', `${node.underlayIP}/24`, 'dev', node.underlayInterface]);
    await execFileAsync('ip', ['-n', netns, 'link', 'set', node.underlayInterface, 'up']);

    state.holder = await this.startHolder(node);
    node.holderPid = state.holder.pid;
    this.record();
    // Pod traffic leaving the cluster CIDR (to the API server, the underlay) takes the node's address, as
    // on a cloud node; pod-to-pod traffic keeps its pod IPs.
    const masq = await nodeExec(node, 'iptables', ['-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', node.podCIDR, '!', '-d', CLUSTER_CIDR, '-m', 'comment', '--comment', 'aks-mesh sandbox: pods leaving the cluster CIDR', '-j', 'MASQUERADE']);
    if (masq.code !== 0) throw new Error(`${name}: iptables MASQUERADE rule failed: ${masq.stderr.trim()}`);

    writeFileSync(join(dir, 'containerd.toml'), containerdConfig(dir));
    writeFileSync(join(dir, 'cni', 'net.d', '10-aks-mesh-bridge.conflist'), cniConfig(node.podCIDR, join(dir, 'cni', 'ipam')));
    writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\n');
    makeCgroups(state.cgroupRoot);

    state.containerd = this.spawnInNode(node, 'containerd', ['containerd', '--config', join(dir, 'containerd.toml')], join(logsDir, 'containerd.log'));
    await waitUntil(`containerd of ${name} to answer on ${CONTAINERD_SOCKET}`, 30_000, state.containerd, async () => (await nodeExec(node, 'ctr', ['--address', CONTAINERD_SOCKET, 'version'])).code === 0, () => tailOf(join(logsDir, 'containerd.log'), 30));
    for (const archive of images) await importInto(node, archive);

    // The Node object before kubelet registers, so its pod CIDR is ours (nodeipam keeps a CIDR a Node
    // already has); kubelet then adds its labels and status to it.
    const core = this.kubeConfig().makeApiClient(k8s.CoreV1Api);
    const created = await core.createNode({ body: { metadata: { name }, spec: { podCIDR: node.podCIDR, podCIDRs: [node.podCIDR] } } });
    // kubelet 1.20 panics on an existing Node without status.capacity (reconcileHugePageResource writes
    // into a nil map): give it placeholder values, which kubelet replaces with the real ones.
    const placeholder = { cpu: '1', memory: '1Gi', pods: '110' };
    await core.replaceNodeStatus({ name, body: { ...created, status: { capacity: placeholder, allocatable: placeholder } } });
    this.log(`${name}: containerd up, ${images.length} image(s) imported`);
  }

  /** `unshare --mount --propagation private` in the node's netns, with the node's /run and /var/log. */
  private async startHolder(node: RealNode): Promise<Proc> {
    // $1: the node's log dir. /var/run is /run's symlink, so /var/run/wireguard is the node's too.
    const script = [
      'set -e',
      'mount -t tmpfs -o mode=0755,size=64m aks-mesh-node-run /run',
      'mkdir -p /run/lock /run/netns /run/containerd /run/wireguard',
      'mount --bind "$1" /var/log',
      'mkdir -p /var/log/pods /var/log/containers',
      'echo ready',
      'exec sleep infinity',
    ].join('\n');
    const argv = ['nsenter', `--net=/run/netns/${node.netns}`, '--', 'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'holder', node.logsDir];
    const child = spawn(SETPRIV ?? argv[0], SETPRIV ? ['--pdeathsig', 'SIGKILL', '--', ...argv] : argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = procOf(child, `holder of ${node.name}`);
    this.box.track(child);
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (out += d));
    await waitUntil(`the mount namespace of ${node.name}`, 10_000, proc, () => out.includes('ready'), () => out);
    const ours = readlinkSync('/proc/self/ns/mnt');
    if (readlinkSync(`/proc/${proc.pid}/ns/mnt`) === ours) throw new Error(`${node.name}: the holder (pid ${proc.pid}) is not in a mount namespace of its own`);
    return proc;
  }

  /** Every real node routes every other's pod CIDR via its underlay IP (a cloud's route table). */
  private async addPodRoutes(): Promise<void> {
    for (const a of this.nodes) {
      for (const b of this.nodes) {
        if (a !== b) await execFileAsync('ip', ['-n', a.netns, 'route', 'add', b.podCIDR, 'via', b.underlayIP]);
      }
    }
  }

  private async startKubelet(s: NodeState): Promise<void> {
    const n = s.node;
    const kubeletDir = join(n.dir, 'kubelet');
    const args = [
      `--kubeconfig=${this.kubeconfigPath}`,
      '--container-runtime=remote',
      `--container-runtime-endpoint=unix://${CONTAINERD_SOCKET}`,
      `--root-dir=${kubeletDir}`,
      `--cert-dir=${join(kubeletDir, 'pki')}`,
      `--volume-plugin-dir=${join(kubeletDir, 'volume-plugins')}`,
      '--cgroup-driver=cgroupfs',
      `--cgroup-root=${s.cgroupRoot}`,
      `--node-ip=${n.underlayIP}`,
      `--hostname-override=${n.name}`,
      '--fail-swap-on=false',
      `--pod-infra-container-image=${PAUSE_IMAGE}`,
      `--resolv-conf=${join(n.dir, 'resolv.conf')}`,
      '--read-only-port=0',
      // The API server (kubectl logs/exec/port-forward) calls kubelet without a client certificate
      // (TestCluster has none for it): anonymous, always allowed, reachable only on our underlay.
      '--anonymous-auth=true',
      '--authorization-mode=AlwaysAllow',
      // Never delete an imported image: nothing could pull it again.
      '--image-gc-high-threshold=100',
      '--image-gc-low-threshold=99',
      // A busy shared disk must not evict the test's pods.
      '--eviction-hard=memory.available<1Mi,nodefs.available<1%,nodefs.inodesFree<1%,imagefs.available<1%',
      '--node-status-update-frequency=4s',
      '--serialize-image-pulls=false',
      '--logtostderr=true',
      '--v=1',
    ];
    s.kubelet = this.spawnInNode(n, 'kubelet', [join(kubeNodeBinDir(), 'kubelet'), ...args], join(n.logsDir, 'kubelet.log'));
  }

  private startProxy(s: NodeState): void {
    const n = s.node;
    const args = [
      `--kubeconfig=${this.kubeconfigPath}`,
      '--proxy-mode=iptables',
      `--hostname-override=${n.name}`,
      `--bind-address=${n.underlayIP}`,
      `--cluster-cidr=${CLUSTER_CIDR}`,
      '--metrics-bind-address=127.0.0.1:10249',
      '--healthz-bind-address=127.0.0.1:10256',
      // 0: leave the machine-wide conntrack table size and the timeouts as they are.
      '--conntrack-max-per-core=0',
      '--conntrack-tcp-timeout-established=0s',
      '--conntrack-tcp-timeout-close-wait=0s',
      '--oom-score-adj=0',
      '--logtostderr=true',
      '--v=1',
    ];
    s.proxy = this.spawnInNode(n, 'kube-proxy', [join(kubeNodeBinDir(), 'kube-proxy'), ...args], join(n.logsDir, 'kube-proxy.log'));
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const core = this.kubeConfig().makeApiClient(k8s.CoreV1Api);
    const deadline = performance.now() + timeoutMs;
    let last = '';
    for (;;) {
      for (const s of this.states) {
        for (const p of [s.containerd, s.kubelet, s.holder]) {
          if (p && p.child.exitCode !== null) throw new Error(`${p.role} (pid ${p.pid}) exited with code ${p.child.exitCode} while waiting for the nodes to be Ready\n${this.logTail(s.node.name)}`);
        }
      }
      const notReady: string[] = [];
      for (const n of this.nodes) {
        const got = await core.readNode({ name: n.name }).catch(() => undefined);
        const ready = got?.status?.conditions?.find((c) => c.type === 'Ready');
        if (ready?.status !== 'True') notReady.push(`${n.name}: ${ready ? `${ready.reason ?? ready.status}: ${ready.message ?? ''}` : 'no Ready condition yet'}`);
        else if (got?.spec?.taints?.some((t) => t.key === NOT_READY_TAINT)) {
          // The API server's TaintNodesByCondition plugin taints every new Node not-ready; the node
          // lifecycle controller would lift it, but it does not run here (it would mark MeshCluster's
          // kubelet-less Nodes unreachable): lift it as it would, once kubelet reports Ready.
          await core.replaceNode({ name: n.name, body: { ...got, spec: { ...got.spec, taints: got.spec.taints.filter((t) => t.key !== NOT_READY_TAINT) } } }).catch(() => undefined);
          notReady.push(`${n.name}: taint ${NOT_READY_TAINT} being lifted`);
        }
      }
      if (notReady.length === 0) return;
      last = notReady.join('; ');
      if (performance.now() > deadline) throw new Error(`real nodes not Ready after ${Math.round(timeoutMs / 1000)} s (${last})\n${this.logTail()}`);
      await sleep(500);
    }
  }

  /** A process on the host (the controllers), its output in dir/<role>.log. */
  private spawnHost(role: string, command: string, args: string[]): Proc {
    const fd = openSync(join(this.dir, `${role}.log`), 'a', 0o644);
    let child: ChildProcess;
    try {
      writeSync(fd, `=== ${new Date().toISOString()} real nodes: starting ${role}: ${command} ${args.join(' ')}\n`);
      child = SETPRIV ? spawn(SETPRIV, ['--pdeathsig', 'SIGKILL', '--', command, ...args], { stdio: ['ignore', fd, fd] }) : spawn(command, args, { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    this.box.track(child);
    return procOf(child, role);
  }

  /** A long-running process in a node's network and mount namespaces, its output appended to logFile. */
  private spawnInNode(node: RealNode, role: string, argv: string[], logFile: string): Proc {
    const fd = openSync(logFile, 'a', 0o644);
    let child: ChildProcess;
    try {
      writeSync(fd, `=== ${new Date().toISOString()} real node ${node.name}: starting ${role}: ${argv.join(' ')}\n`);
      // --pdeathsig: the kernel stops it if the test process dies without running any hook.
      const wrapped = SETPRIV ? [SETPRIV, '--pdeathsig', 'SIGTERM', '--', ...argv] : argv;
      child = spawn('nsenter', [`--target=${node.holderPid}`, '--mount', '--net', '--', ...wrapped], { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    this.box.track(child);
    return procOf(child, `${role} of ${node.name}`);
  }
}

// ---------------------------------------------------------------- runs that died

/**
 * Where each run lists what it made (machine-wide, root's only: see STATE_DIR). Exit and signal
 * hooks clean up, and the parent-death signal stops kubelet, containerd and the holders when the test
 * process is SIGKILLed; but containerd's shims and the containers outlive containerd by design. So
 * the next run sweeps what a dead run left: processes in its cgroups, and in its nodes' mount
 * namespaces (checked to still be that run's: their mounts name its dir), then its cgroups and
 * network namespaces. A record is acted on only when every name in it is one this harness makes.
 */
export const RUN_RECORDS = join(STATE_DIR, 'realnodes');

interface RunRecord {
  pid: number;
  /** The process's start time (processStartTime): a reused pid is not this run. */
  start: number;
  dir: string;
  netns: string[];
  cgroupRoots: string[];
  mountNamespaces: string[];
  hostLinks?: string[];
  extraNetns?: string[];
  extraDirs?: string[];
}

/** The names this harness (and its own MeshCluster, Sandbox, TestCluster) make; nothing else is swept. */
function recordPatterns(): Record<'dir' | 'extraDirs' | 'netns' | 'cgroupRoots' | 'mountNamespaces' | 'hostLinks', RegExp> {
  const tmp = tmpdir().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return {
    dir: new RegExp(`^${tmp}/aks-mesh-realnode-[A-Za-z0-9]{6}$`),
    extraDirs: new RegExp(`^${tmp}/aks-mesh-(cluster|kube)-[A-Za-z0-9]{6}$`),
    netns: /^am-[0-9a-f]{6}-[a-z0-9]{1,8}$/,
    cgroupRoots: /^\/aks-mesh-[0-9a-f]{6}-real-\d{1,2}$/,
    // '' for a holder that was gone when the record was written.
    mountNamespaces: /^(mnt:\[\d+\])?$/,
    hostLinks: /^am[0-9a-f]{6}h$/,
  };
}

/** Why a record (file `name`) must not be acted on, or null when every field is one of our names. */
export function invalidRunRecord(name: string, rec: unknown): string | null {
  const m = /^(\d+)-[0-9a-f]{6}\.json$/.exec(name);
  if (!m) return 'its file name is not <pid>-<tag>.json';
  if (!rec || typeof rec !== 'object') return 'it is not a JSON object';
  const r = rec as Record<string, unknown>;
  if (r.pid !== Number(m[1]) || !Number.isInteger(r.pid) || (r.pid as number) < 2) return `pid: ${JSON.stringify(r.pid)} is not the pid in its name`;
  if (!Number.isInteger(r.start) || (r.start as number) <= 0) return `start: ${JSON.stringify(r.start)} is not a process start time`;
  const p = recordPatterns();
  if (typeof r.dir !== 'string' || !p.dir.test(r.dir)) return `dir: ${JSON.stringify(r.dir)} does not match ${p.dir}`;
  const lists: Array<[string, RegExp, boolean]> = [
    ['netns', p.netns, true],
    ['cgroupRoots', p.cgroupRoots, true],
    ['mountNamespaces', p.mountNamespaces, true],
    ['hostLinks', p.hostLinks, false],
    ['extraNetns', p.netns, false],
    ['extraDirs', p.extraDirs, false],
  ];
  for (const [field, re, required] of lists) {
    const v = r[field];
    if (v === undefined && !required) continue;
    if (!Array.isArray(v)) return `${field}: not a list`;
    const bad = v.find((x) => typeof x !== 'string' || !re.test(x));
    if (bad !== undefined) return `${field}: ${JSON.stringify(bad)} does not match ${re}`;
  }
  return null;
}

export function sweepStaleRuns(log: (line: string) => void = () => undefined): void {
  sweepRecords(log);
  // A dead run's kubelets changed the host's sysctls: the last claim out restores them.
  const restored = new SysctlClaim().releaseStale();
  if (Object.keys(restored).length) log(`restored the host sysctls of dead runs: ${JSON.stringify(restored)}`);
}

function sweepRecords(log: (line: string) => void): void {
  if (!stateDirExists(RUN_RECORDS)) return;
  for (const name of readdirSync(RUN_RECORDS)) {
    if (!name.endsWith('.json')) continue;
    const path = join(RUN_RECORDS, name);
    let rec: RunRecord;
    try {
      rec = JSON.parse(readStateFile(path)) as RunRecord;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // its run removed it meanwhile
      log(`${path}: ignored and removed: ${(err as Error).message}`);
      rmSync(path, { force: true });
      continue;
    }
    const invalid = invalidRunRecord(name, rec);
    if (invalid) {
      // Not a record this harness wrote: nothing in it is acted on.
      log(`${path}: ignored and removed, not a record of this harness: ${invalid}`);
      rmSync(path, { force: true });
      continue;
    }
    if (alive(rec.pid, rec.start)) continue;
    const pids = new Set<number>();
    for (const root of rec.cgroupRoots) for (const pid of cgroupPids(root)) pids.add(pid);
    const wanted = new Set(rec.mountNamespaces.filter(Boolean));
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry) || !wanted.has(readlinkOr(`/proc/${entry}/ns/mnt`))) continue;
      try {
        if (readFileSync(`/proc/${entry}/mountinfo`, 'utf8').includes(rec.dir)) pids.add(Number(entry));
      } catch {
        /* gone */
      }
    }
    pids.delete(process.pid);
    for (const pid of pids) signalPid(pid, 'SIGKILL');
    waitGone([...pids], 3000);
    for (const root of rec.cgroupRoots) removeCgroups(root);
    for (const ns of [...rec.netns, ...(rec.extraNetns ?? [])]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    }
    for (const link of rec.hostLinks ?? []) {
      try {
        execFileSync('ip', ['link', 'del', link], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    }
    for (const d of [rec.dir, ...(rec.extraDirs ?? [])]) rmSync(d, { recursive: true, force: true });
    rmSync(path, { force: true });
    log(`swept what run ${rec.pid} left behind: ${pids.size} process(es), cgroups ${rec.cgroupRoots.join(', ')}, namespaces ${[...rec.netns, ...(rec.extraNetns ?? [])].join(', ')}`);
  }
}

function readlinkOr(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------- node processes

async function nodeExec(node: RealNode, command: string, args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
  const child = spawn('nsenter', [`--target=${node.holderPid}`, '--mount', '--net', '--', command, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    timeout: options.timeoutMs ?? 60_000,
    killSignal: 'SIGKILL',
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin.on('error', () => undefined);
  child.stdin.end(options.input ?? '');
  return new Promise((resolve) => {
    child.once('error', (err) => resolve({ code: 127, stdout, stderr: stderr + err.message }));
    child.once('close', (code, sig) => resolve({ code: code ?? 128 + (sig ? (osConstants.signals[sig] ?? 0) : 0), stdout, stderr }));
  });
}

async function importInto(node: RealNode, archive: string): Promise<void> {
  const r = await nodeExec(node, 'ctr', ['--address', CONTAINERD_SOCKET, '-n', 'k8s.io', 'images', 'import', archive], { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`${node.name}: importing ${archive} into containerd failed: ${(r.stderr || r.stdout).trim()}`);
}

function procOf(child: ChildProcess, role: string): Proc {
  if (child.pid === undefined) throw new Error(`could not start ${role} (${child.spawnargs.join(' ')})`);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  return { child, pid: child.pid, role, exited };
}

/** SIGTERM, SIGKILL after graceMs; true when SIGKILL was needed. */
async function terminate(p: Proc, graceMs: number): Promise<boolean> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return false;
  signalPid(p.pid, 'SIGTERM');
  let forced = false;
  const timer = setTimeout(() => {
    forced = true;
    signalPid(p.pid, 'SIGKILL');
  }, graceMs);
  await p.exited;
  clearTimeout(timer);
  return forced;
}

async function waitUntil(what: string, timeoutMs: number, proc: Proc, check: () => Promise<boolean> | boolean, logs: () => string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`${proc.role} (pid ${proc.pid}) exited (${proc.child.signalCode ?? `code ${proc.child.exitCode}`}) while waiting for ${what}\n${logs()}`);
    }
    if (await check()) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${logs()}`);
    await sleep(100);
  }
}

/**
 * The pids of a node: every process in its cgroups (pods' containers, in every hierarchy) and every
 * process in its mount namespace (containerd, its shims, kubelet, what exec started), except the holder.
 */
function nodePids(s: NodeState): number[] {
  const pids = new Set<number>(cgroupPids(s.cgroupRoot));
  const holder = s.holder?.pid;
  if (holder) {
    let mnt: string | undefined;
    try {
      mnt = readlinkSync(`/proc/${holder}/ns/mnt`);
    } catch {
      /* holder gone */
    }
    if (mnt) {
      for (const entry of readdirSync('/proc')) {
        if (!/^\d+$/.test(entry) || Number(entry) === holder) continue;
        try {
          if (readlinkSync(`/proc/${entry}/ns/mnt`) === mnt) pids.add(Number(entry));
        } catch {
          /* gone */
        }
      }
    }
  }
  pids.delete(process.pid);
  return [...pids].filter(isRunning);
}

/** Every process in a cgroup tree of ours, in every hierarchy. */
function cgroupPids(root: string): number[] {
  const pids = new Set<number>();
  for (const dir of cgroupDirs(root)) {
    for (const d of walk(dir)) {
      try {
        for (const line of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (line) pids.add(Number(line));
      } catch {
        /* removed meanwhile */
      }
    }
  }
  return [...pids];
}

async function killNodeProcesses(s: NodeState, graceMs: number): Promise<void> {
  // Containers get SIGKILL at once (a throwaway node); the rest SIGTERM first, so containerd unmounts.
  const deadline = Date.now() + graceMs;
  for (let round = 0; ; round++) {
    const pids = nodePids(s);
    if (pids.length === 0) return;
    for (const pid of pids) signalPid(pid, round === 0 && Date.now() < deadline ? 'SIGTERM' : 'SIGKILL');
    if (Date.now() > deadline + 5000) return;
    await sleep(round === 0 ? 300 : 100);
  }
}

function killNodeProcessesSync(s: NodeState): void {
  for (let round = 0; round < 20; round++) {
    const pids = nodePids(s);
    if (pids.length === 0) return;
    for (const pid of pids) signalPid(pid, 'SIGKILL');
    waitGone(pids, 500);
  }
}

function waitGone(pids: number[], ms: number): void {
  const deadline = Date.now() + ms;
  while (pids.some(isRunning) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
}

// ---------------------------------------------------------------- cgroups (v1, cgroupfs)

/** Our cgroup root in every mounted hierarchy (/sys/fs/cgroup/<hierarchy><root>). */
function cgroupDirs(root: string): string[] {
  const out: string[] = [];
  let hierarchies: string[] = [];
  try {
    hierarchies = readdirSync('/sys/fs/cgroup');
  } catch {
    return out;
  }
  for (const h of hierarchies) {
    const d = join('/sys/fs/cgroup', h, root);
    if (existsSync(d)) out.push(d);
  }
  return out;
}

/** kubelet refuses a --cgroup-root that does not exist: make it in every v1 hierarchy (cpuset with its parent's cpus and mems). */
function makeCgroups(root: string): void {
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const base = join('/sys/fs/cgroup', h);
    try {
      if (!statSync(join(base, 'cgroup.procs')).isFile()) continue;
    } catch {
      continue;
    }
    const d = join(base, root);
    mkdirSync(d, { recursive: true });
    if (h === 'cpuset') {
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        const v = readFileSync(join(base, f), 'utf8').trim();
        if (readFileSync(join(d, f), 'utf8').trim() === '') writeFileSync(join(d, f), v);
      }
    }
  }
}

/** Remove our cgroup trees, deepest first; returns what could not be removed. */
function removeCgroups(root: string): string[] {
  const left: string[] = [];
  for (const dir of cgroupDirs(root)) {
    for (const d of walk(dir).reverse()) {
      let removed = false;
      for (let i = 0; i < 50 && !removed; i++) {
        try {
          rmdirSync(d);
          removed = true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') removed = true;
          else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
        }
      }
      if (!removed) left.push(d);
    }
  }
  return left;
}

/** A directory and its subdirectories, parents before children. */
function walk(dir: string): string[] {
  const out = [dir];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const e of readdirSync(out[i], { withFileTypes: true })) if (e.isDirectory()) out.push(join(out[i], e.name));
    } catch {
      /* removed meanwhile */
    }
  }
  return out;
}

// ---------------------------------------------------------------- configs

function containerdConfig(dir: string): string {
  const q = (s: string) => JSON.stringify(s);
  return `# A real node's containerd (sandbox/kubenode.ts): its own root, socket and CNI configuration.
version = 2
root = ${q(join(dir, 'containerd'))}
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = ${q(CONTAINERD_SOCKET)}

[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(join(dir, 'containerd', 'opt'))}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${q(PAUSE_IMAGE)}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Root here lacks CAP_SYS_RESOURCE: runc may not lower a container's oom_score_adj below ours (the
  # pause container asks for -998, and runc's init dies: "can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${q(CNI_BIN_DIR)}
    conf_dir = ${q(join(dir, 'cni', 'net.d'))}
    max_conf_num = 1
`;
}

function cniConfig(podCIDR: string, ipamDir: string): string {
  return (
    JSON.stringify(
      {
        cniVersion: '0.4.0',
        name: 'aks-mesh-sandbox',
        plugins: [
          {
            type: 'bridge',
            bridge: 'cni0',
            isGateway: true,
            // Masquerading is one iptables rule of ours (pods leaving the cluster CIDR only), not the plugin's.
            ipMasq: false,
            hairpinMode: true,
            ipam: { type: 'host-local', ranges: [[{ subnet: podCIDR }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: ipamDir },
          },
        ],
      },
      null,
      2,
    ) + '\n'
  );
}

/** default/kubernetes endpoints (the API server runs with --endpoint-reconciler-type=none): the underlay host IP. */
async function upsertKubernetesEndpoints(api: TestCluster, ip: string, port: number): Promise<void> {
  const core = api.kubeConfig().makeApiClient(k8s.CoreV1Api);
  const body: k8s.V1Endpoints = {
    metadata: { name: 'kubernetes', namespace: 'default' },
    subsets: [{ addresses: [{ ip }], ports: [{ name: 'https', port, protocol: 'TCP' }] }],
  };
  try {
    await core.createNamespacedEndpoints({ namespace: 'default', body });
  } catch (err) {
    if (!(err instanceof k8s.ApiException && err.code === 409)) throw err;
    await core.replaceNamespacedEndpoints({ name: 'kubernetes', namespace: 'default', body });
  }
  // kube-proxy 1.20 reads EndpointSlices: discovery.k8s.io/v1beta1 (the client library knows only v1).
  const slice = {
    apiVersion: 'discovery.k8s.io/v1beta1',
    kind: 'EndpointSlice',
    metadata: { name: 'kubernetes', namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes', 'endpointslice.kubernetes.io/managed-by': 'aks-mesh-sandbox' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ip], conditions: { ready: true } }],
    ports: [{ name: 'https', port, protocol: 'TCP' }],
  };
  const r = await api.kubectl(['apply', '-f', '-'], { input: JSON.stringify(slice) });
  if (r.code !== 0) throw new Error(`EndpointSlice default/kubernetes: kubectl apply failed: ${r.stderr.trim()}`);
}

// ---------------------------------------------------------------- images

/** Build (or find cached) the pause image; returns its docker-archive. */
export async function buildPauseImage(): Promise<string> {
  return (await buildNodeImage('pause')).archive;
}

/** sandbox/node/build-images.sh <which>: { reference, archive }. */
export async function buildNodeImage(which: 'pause' | 'tools'): Promise<{ reference: string; archive: string }> {
  try {
    const { stdout } = await execFileAsync(BUILD_IMAGES, [which], { encoding: 'utf8', timeout: 600_000 });
    const [, reference, archive] = stdout.trim().split('\n').pop()?.split(' ') ?? [];
    if (!reference || !archive) throw new Error(`unexpected output: ${stdout.trim()}`);
    return { reference, archive };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${BUILD_IMAGES} ${which} failed: ${e.stderr?.trim() || e.message}`);
  }
}

// ---------------------------------------------------------------- machine-wide state (root's only)

/**
 * Throw naming the path when it is not a directory (or file) of ours that only we can write: a
 * symlink, another owner, group- or world-writable. `st` from fstat of an fd opened with O_NOFOLLOW.
 */
export function assertOwnedPath(path: string, kind: 'directory' | 'file', st: Stats = lstatSync(path)): void {
  const uid = process.getuid?.() ?? 0;
  let why: string | undefined;
  if (st.isSymbolicLink()) why = 'is a symlink';
  else if (kind === 'directory' && !st.isDirectory()) why = 'is not a directory';
  else if (kind === 'file' && !st.isFile()) why = 'is not a regular file';
  else if (st.uid !== uid) why = `is owned by uid ${st.uid}, not ${uid}`;
  else if ((st.mode & 0o022) !== 0) why = `is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`;
  if (why) throw new Error(`${path}: refusing this ${kind}: it ${why}; the real-node harness acts on its contents as root (remove it if you did not make it)`);
}

/** STATE_DIR/<sub>, made 0700 when missing, checked either way (its parent too). */
function stateDir(path: string): string {
  for (const d of [STATE_DIR, path]) {
    try {
      mkdirSync(d, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    assertOwnedPath(d, 'directory');
  }
  return path;
}

/** Whether STATE_DIR/<sub> exists; throws when it exists but is not safe to act on. */
function stateDirExists(path: string): boolean {
  if (!existsSync(path)) return false;
  assertOwnedPath(STATE_DIR, 'directory');
  assertOwnedPath(path, 'directory');
  return true;
}

/** A file's text, never through a symlink, refused unless ours and written by us only. */
function readStateFile(path: string): string {
  const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    assertOwnedPath(path, 'file', fstatSync(fd));
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** Write a new file next to `path` (exclusive, no symlink followed, 0600) and rename it over `path`. */
function writeStateFile(path: string, text: string): void {
  const tmp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * A process's start time (clock ticks after boot, /proc/<pid>/stat field 22), or undefined when it
 * is gone. With the pid it names one process: a later process that got the same pid has another.
 */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    return Number.isInteger(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

/** This very process (pid and start time) still runs. */
function alive(pid: number, start: number): boolean {
  return isRunning(pid) && processStartTime(pid) === start;
}

const SELF_START = processStartTime(process.pid) ?? 0;

// ---------------------------------------------------------------- host sysctls

/** Machine-wide sysctls kubelet sets at start (pkg/kubelet/cm setupKernelTunables); restored when the last run is done. */
export const KUBELET_SYSCTLS = ['vm/overcommit_memory', 'vm/panic_on_oom', 'kernel/panic', 'kernel/panic_on_oops', 'kernel/keys/root_maxkeys', 'kernel/keys/root_maxbytes'];
/** Where runs that use real nodes record the host's original values and hold their claims (machine-wide). */
export const SYSCTL_DIR = join(STATE_DIR, 'kubelet-sysctls');

export function readSysctls(names: readonly string[] = KUBELET_SYSCTLS): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    try {
      out[n] = readFileSync(join('/proc/sys', n), 'utf8').trim();
    } catch {
      /* not on this kernel */
    }
  }
  return out;
}

/**
 * What of a recorded original.json may be written back: only KUBELET_SYSCTLS keys, only integer
 * values (all of kubelet's are); anything else in the file is ignored.
 */
export function restorableSysctls(recorded: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!recorded || typeof recorded !== 'object') return out;
  for (const name of KUBELET_SYSCTLS) {
    const v = (recorded as Record<string, unknown>)[name];
    if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) out[name] = v;
  }
  return out;
}

/**
 * Parallel runs share the host's sysctls: the first run to claim records the original values
 * (original.json), each RealNodeCluster holds a claim (claim-<pid>-<tag>: two clusters in one process
 * hold two), and the last one to release writes the originals back. A claim records its process's
 * start time, so a claim whose process died (even if its pid was reused since) is stale and swept.
 */
export class SysctlClaim {
  private held = false;
  private readonly name: string;

  /** `tag`: 6 hex characters that tell this process's claims apart (a Sandbox's tag). */
  constructor(tag: string = randomBytes(3).toString('hex')) {
    if (!/^[0-9a-f]{6}$/.test(tag)) throw new Error(`SysctlClaim: tag ${JSON.stringify(tag)} is not 6 hex characters`);
    this.name = `claim-${process.pid}-${tag}`;
  }

  acquire(): void {
    stateDir(SYSCTL_DIR);
    withLock(() => {
      const original = join(SYSCTL_DIR, 'original.json');
      if (liveClaims().length === 0) {
        // Nobody uses real nodes now: the values are the host's own, unless a run died before restoring them.
        if (existsSync(original)) writeSysctls(readOriginal(original));
        writeStateFile(original, JSON.stringify(readSysctls()) + '\n');
      }
      writeStateFile(join(SYSCTL_DIR, this.name), JSON.stringify({ pid: process.pid, start: SELF_START }) + '\n');
    });
    this.held = true;
  }

  /** With no live claim left (only dead runs' ones), restore the originals; returns what was written. */
  releaseStale(): Record<string, string> {
    if (!stateDirExists(SYSCTL_DIR)) return {};
    let restored: Record<string, string> = {};
    withLock(() => {
      restored = restoreIfLast();
    });
    return restored;
  }

  /** Drop our claim; the last one out restores the originals (returned). */
  release(): Record<string, string> {
    if (!this.held) return {};
    this.held = false;
    let restored: Record<string, string> = {};
    withLock(() => {
      rmSync(join(SYSCTL_DIR, this.name), { force: true });
      restored = restoreIfLast();
    });
    return restored;
  }
}

function readOriginal(path: string): Record<string, string> {
  try {
    return restorableSysctls(JSON.parse(readStateFile(path)));
  } catch (err) {
    if (err instanceof SyntaxError) return {};
    throw err;
  }
}

/** Under the lock: with no live claim, write original.json back and remove it. */
function restoreIfLast(): Record<string, string> {
  const original = join(SYSCTL_DIR, 'original.json');
  if (liveClaims().length > 0 || !existsSync(original)) return {};
  const restored = readOriginal(original);
  writeSysctls(restored);
  unlinkSync(original);
  return restored;
}

/**
 * The pids of live claims on the host sysctls: one per running RealNodeCluster on this machine,
 * this process's included. Empty when no run uses real nodes (or there is no record at all).
 */
export function otherSysctlClaimants(): number[] {
  try {
    return stateDirExists(SYSCTL_DIR) ? liveClaims() : [];
  } catch {
    return [];
  }
}

/** Live claims' pids; a claim of a dead process (or an unreadable one) is removed. */
function liveClaims(): number[] {
  const out: number[] = [];
  for (const name of readdirSync(SYSCTL_DIR)) {
    const m = /^claim-(\d+)-[0-9a-f]{6}$/.exec(name);
    if (!m) continue;
    const path = join(SYSCTL_DIR, name);
    let claim: { pid?: unknown; start?: unknown } = {};
    try {
      claim = JSON.parse(readStateFile(path)) as typeof claim;
    } catch {
      /* unreadable: stale */
    }
    const pid = Number(m[1]);
    if (claim.pid === pid && typeof claim.start === 'number' && alive(pid, claim.start)) out.push(pid);
    else rmSync(path, { force: true });
  }
  return out;
}

function writeSysctls(values: Record<string, string>): void {
  for (const [n, v] of Object.entries(restorableSysctls(values))) {
    try {
      if (readFileSync(join('/proc/sys', n), 'utf8').trim() !== v) writeFileSync(join('/proc/sys', n), v);
    } catch {
      /* not on this kernel */
    }
  }
}

/**
 * A short critical section across processes: an exclusive lock file holding its owner's pid and
 * start time (a lock of a process that is gone, its pid reused or not, is taken over).
 */
function withLock(fn: () => void): void {
  const lock = join(SYSCTL_DIR, 'lock');
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const fd = openSync(lock, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
      try {
        writeSync(fd, JSON.stringify({ pid: process.pid, start: SELF_START }));
      } finally {
        closeSync(fd);
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner: { pid?: unknown; start?: unknown } | undefined;
    let stale = false;
    try {
      owner = JSON.parse(readStateFile(lock)) as typeof owner;
    } catch {
      // Being written, or released meanwhile; still empty after 2 s: its owner died writing it.
      try {
        stale = Date.now() - lstatSync(lock).mtimeMs > 2000;
      } catch {
        /* released */
      }
    }
    if (stale || (owner && !(typeof owner.pid === 'number' && typeof owner.start === 'number' && alive(owner.pid, owner.start)))) {
      rmSync(lock, { force: true }); // its owner died holding it
      continue;
    }
    if (Date.now() > deadline) throw new Error(`${lock} is held by a live process (${JSON.stringify(owner)}) for more than 10 s`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
  try {
    fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}


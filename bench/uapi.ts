/**
 * UAPI benchmark: how fast our UAPI client reads a big wireguard-go device compared with
 * `wg show <if> dump`, and whether a single-peer update gets slower as the device grows.
 *
 * Reading: every run times UapiClient.get() and `wg show <if> dump` on the same socket (in
 * alternating order) and takes their ratio; the table shows median and p95 of each and of the
 * per-run ratio, and, measured in the same run, the socket round trip alone (getBytes) and the
 * parse alone (parseGetBytes of those bytes), so the note can say where the time goes. CPU per
 * read is shown too (ours: this process; wg's: its process, from /proc/self/stat's children
 * times, in 10 ms ticks, so only a mean over all runs): wall times swing on a busy machine.
 *
 *   node bench/uapi.ts [--runs 20] [--warmup 3] [--peers 5000] [--small-peers 10]
 *                      [--binary /path/to/wireguard-go] [--seed 1] [--json]
 *
 * Setup: one network namespace of our own (only `lo` in it, so it has no route anywhere) holding
 * two wireguard-go devices started by SpawnedWireguardGo: a large one (5,000 peers) and a small one
 * (10 peers). Both have a private key and a listen port; their peers have random keys, endpoints
 * in 198.18.0.0/15 and a distinct 10.x.y.0/24 each. The TUN links stay down and no peer has a
 * persistent keepalive, so wireguard-go sends nothing at all (and could reach nothing outside the
 * namespace if it tried). Our client and `wg` both talk to the same socket in /var/run/wireguard.
 *
 * Benchmarks print numbers; they never assert timings. The only checks here are about behaviour
 * (the device holds what we wrote), so that a broken setup cannot print plausible numbers.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';
import {
  SpawnedWireguardGo,
  findWireguardGo,
  fullPeerChange,
  generatePrivateKey,
  parseGetBytes,
  publicKeyOf,
  wireguardGoVersion,
} from '../native/index.ts';
import type { DeviceState, PeerConfig, UapiClient } from '../native/index.ts';
// mulberry32, seeded: the same --seed updates the same peers.
import { prng } from './lib/stats.ts';

const MAX_PEERS = 254 * 256; // 10.1.0.0/24 .. 10.254.255.0/24
const FILL_BATCH = 1000;

// ---------------------------------------------------------------- options

interface Options {
  runs: number;
  warmup: number;
  peers: number;
  smallPeers: number;
  binary: string;
  seed: number;
  json: boolean;
}

const USAGE = `usage: node bench/uapi.ts [options]
  --runs N          measured runs per measurement (default 20)
  --warmup N        unmeasured runs first (default 3)
  --peers N         peers on the large device (default 5000, at most ${MAX_PEERS})
  --small-peers N   peers on the small device (default 10)
  --binary PATH     wireguard-go to run (default: findWireguardGo(), the trixie build if cached)
  --seed N          seed for which peers get updated (default 1)
  --json            print one JSON object instead of tables
  -h, --help        this text`;

function wholeNumber(text: string | undefined, fallback: number, name: string, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new UsageError(`--${name} ${JSON.stringify(text)}: expected a whole number from ${min} to ${max}`);
  }
  return n;
}

class UsageError extends Error {}

function readOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      runs: { type: 'string' },
      warmup: { type: 'string' },
      peers: { type: 'string' },
      'small-peers': { type: 'string' },
      binary: { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  return {
    runs: wholeNumber(values.runs, 20, 'runs', 1, 1000),
    warmup: wholeNumber(values.warmup, 3, 'warmup', 0, 100),
    peers: wholeNumber(values.peers, 5000, 'peers', 1, MAX_PEERS),
    smallPeers: wholeNumber(values['small-peers'], 10, 'small-peers', 1, MAX_PEERS),
    binary: values.binary ?? findWireguardGo(),
    seed: wholeNumber(values.seed, 1, 'seed', 0, 0xffffffff),
    json: values.json,
  };
}

// ---------------------------------------------------------------- statistics

interface Stats {
  runs: number;
  medianMs: number;
  p95Ms: number;
  minMs: number;
  maxMs: number;
  meanMs: number;
  samplesMs: number[];
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((x, y) => x - y);
  const n = sorted.length;
  const median = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  const p95 = sorted[Math.min(n - 1, Math.ceil(0.95 * n) - 1)]; // nearest rank
  return {
    runs: n,
    medianMs: round(median),
    p95Ms: round(p95),
    minMs: round(sorted[0]),
    maxMs: round(sorted[n - 1]),
    meanMs: round(sorted.reduce((s, x) => s + x, 0) / n),
    samplesMs: samples.map(round),
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** CPU time of this process's waited-for children (the `wg` processes), in ms: /proc/self/stat cutime + cstime, 100 ticks a second. */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // Fields after the command name (which may hold spaces) start at ") "; cutime and cstime are fields 16 and 17.
  const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

function ratio(a: number, b: number): number {
  return b === 0 ? Number.NaN : Math.round((a / b) * 100) / 100;
}

async function timed<T>(fn: () => Promise<T> | T): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}

// ---------------------------------------------------------------- devices

/** Peer i: a random key, endpoint 198.18.0.0/15, allowed IPs 10.(1 + i/256).(i%256).0/24. */
function makePeers(count: number): PeerConfig[] {
  return Array.from({ length: count }, (_, i) => ({
    publicKey: publicKeyOf(generatePrivateKey()),
    endpoint: `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}:51820`,
    allowedIPs: [ownCidr(i)],
  }));
}

function ownCidr(i: number): string {
  return `10.${1 + (i >> 8)}.${i & 255}.0/24`;
}

/** The two allowed-IP sets an update toggles between: both inside the peer's own /24, so no peer steals from another. */
function toggledAllowedIPs(i: number, current: string[]): string[] {
  const base = ownCidr(i);
  if (current.length === 1) {
    const prefix = base.slice(0, base.lastIndexOf('.'));
    return [`${prefix}.0/25`, `${prefix}.128/25`];
  }
  return [base];
}

interface Device {
  label: string;
  wg: SpawnedWireguardGo;
  client: UapiClient;
  peers: PeerConfig[];
  listenPort: number;
  fillMs: number;
  fillSets: number;
}

async function startDevice(
  box: Sandbox,
  ns: string,
  started: SpawnedWireguardGo[],
  opts: { label: string; suffix: string; binary: string; listenPort: number; peers: PeerConfig[] },
): Promise<Device> {
  const interfaceName = box.ifName('wg', opts.suffix);
  const privateKey = generatePrivateKey();
  const wg = new SpawnedWireguardGo({
    interfaceName,
    netns: ns,
    binary: opts.binary,
    timeoutMs: 10_000,
    // A restart would bring back an empty device; the final check would catch it, but do not hide it.
    backoffInitialMs: 60_000,
    onReady: async ({ client, restart }) => {
      if (restart) throw new Error(`wireguard-go for ${interfaceName} restarted during the benchmark`);
      await client.set({ privateKey, listenPort: opts.listenPort });
    },
  });
  started.push(wg);
  await wg.start();
  const fill = await timed(async () => {
    let sets = 0;
    for (let i = 0; i < opts.peers.length; i += FILL_BATCH) {
      await wg.client.set({ peers: opts.peers.slice(i, i + FILL_BATCH).map((p) => fullPeerChange(p, false)) });
      sets++;
    }
    return sets;
  });
  return {
    label: opts.label,
    wg,
    client: wg.client,
    peers: opts.peers,
    listenPort: opts.listenPort,
    fillMs: fill.ms,
    fillSets: fill.value,
  };
}

/** `wg show <if> dump`: the independent reader, spawned as a process, on the same socket as our client. */
function wgDump(interfaceName: string): string {
  return execFileSync('wg', ['show', interfaceName, 'dump'], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    timeout: 30_000,
  });
}

/** Fail loudly if the device does not hold what we wrote (a benchmark of a broken setup is worthless). */
function checkDevice(device: Device, state: DeviceState, dump: string): void {
  const where = `${device.label} device (${device.wg.interfaceName})`;
  const dumpPeers = dump.trimEnd().split('\n').length - 1;
  if (state.peers.length !== device.peers.length || dumpPeers !== device.peers.length) {
    throw new Error(`${where}: expected ${device.peers.length} peers, get() has ${state.peers.length}, wg dump has ${dumpPeers}`);
  }
  if (state.listenPort !== device.listenPort || state.privateKey === null) {
    throw new Error(`${where}: listen port ${state.listenPort} / private key ${state.privateKey ? 'set' : 'missing'}: device was reset?`);
  }
  const live = new Map(state.peers.map((p) => [p.publicKey, p]));
  for (const want of device.peers) {
    const got = live.get(want.publicKey);
    const gotIPs = got ? [...got.allowedIPs].sort().join(',') : '(missing)';
    if (gotIPs !== [...want.allowedIPs].sort().join(',')) {
      throw new Error(`${where}: peer ${want.publicKey} has allowed IPs ${gotIPs}, expected ${want.allowedIPs.join(',')}`);
    }
    if (!got || got.endpoint !== want.endpoint) {
      throw new Error(`${where}: peer ${want.publicKey} has endpoint ${got?.endpoint}, expected ${want.endpoint}`);
    }
    if (got.lastHandshake !== null || got.txBytes !== 0n || got.rxBytes !== 0n) {
      throw new Error(`${where}: peer ${want.publicKey} has traffic counters: something was sent, which must not happen`);
    }
  }
}

// ---------------------------------------------------------------- the benchmark

interface Result {
  meta: {
    wireguardGo: { binary: string; version: string };
    wg: string;
    node: string;
    cpu: string;
    peers: { large: number; small: number };
    runs: number;
    warmup: number;
    seed: number;
    getAnswerBytes: number;
    getAnswerLines: number;
    wgDumpBytes: number;
    setup: { keygenMs: number; fillLargeMs: number; fillLargeSets: number; fillSmallMs: number };
  };
  get: {
    ours: Stats;
    /** getBytes(): connect, request, read the answer into one buffer; no decoding. */
    oursRoundTripOnly: Stats;
    /** parseGetBytes() of those bytes. */
    parseOnly: Stats;
    wgDump: Stats;
    /** ours / wg dump of the same run, as stats over the runs (no unit). */
    ratioPerRun: Stats;
    /** Medians of the round trip alone and of the parse alone, as fractions of get()'s median. */
    shares: { roundTrip: number; parse: number };
    /** Mean CPU per read: get() in this process; wg dump in its own process (children's CPU, 10 ms ticks). */
    cpuPerReadMs: { ours: number; wgDump: number };
  };
  update: {
    large: Stats;
    small: Stats;
    ratioLargeToSmall: { median: number; p95: number };
  };
}

async function bench(opts: Options, log: (line: string) => void): Promise<Result> {
  const box = new Sandbox();
  const started: SpawnedWireguardGo[] = [];
  // If the process exits without reaching `finally` (Ctrl-C: the Sandbox hook calls process.exit),
  // SIGTERM our wireguard-go processes by pid so they remove their TUN and socket.
  const killOnExit = (): void => {
    for (const wg of started) {
      if (wg.pid === undefined) continue;
      try {
        process.kill(wg.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
  };
  process.once('exit', killOnExit);
  try {
    const version = wireguardGoVersion(opts.binary);
    const wgVersion = execFileSync('wg', ['--version'], { encoding: 'utf8', timeout: 5000 }).split(' - ')[0].trim();
    const ns = await box.addNamespace('bench');

    log(`generating ${opts.peers + opts.smallPeers} peer keys...`);
    const keygen = await timed(() => ({ large: makePeers(opts.peers), small: makePeers(opts.smallPeers) }));

    log(`starting wireguard-go ${version} and filling ${opts.peers} + ${opts.smallPeers} peers...`);
    const large = await startDevice(box, ns, started, {
      label: 'large',
      suffix: 'b',
      binary: opts.binary,
      listenPort: 51820,
      peers: keygen.value.large,
    });
    const small = await startDevice(box, ns, started, {
      label: 'small',
      suffix: 's',
      binary: opts.binary,
      listenPort: 51821,
      peers: keygen.value.small,
    });
    checkDevice(large, await large.client.get(), wgDump(large.wg.interfaceName));
    checkDevice(small, await small.client.get(), wgDump(small.wg.interfaceName));

    // 1. Reading the large device: ours (round trip + parse), round trip alone, parse alone, wg dump.
    log(`reading the ${opts.peers}-peer device, ${opts.warmup} + ${opts.runs} runs...`);
    const ours: number[] = [];
    const roundTrip: number[] = [];
    const parse: number[] = [];
    const wg: number[] = [];
    let oursCpu = 0;
    let wgCpu = 0;
    let raw: Buffer = Buffer.alloc(0);
    let dump = '';
    for (let r = -opts.warmup; r < opts.runs; r++) {
      const measured = r >= 0;
      // Alternate which reader goes first, so neither always gets the warmer caches.
      const readers: Array<() => Promise<void>> = [
        async () => {
          const cpu = process.cpuUsage();
          const t = await timed(() => large.client.get());
          const used = cpuMs(cpu);
          if (t.value.peers.length !== opts.peers) throw new Error(`get() returned ${t.value.peers.length} peers`);
          if (measured) {
            ours.push(t.ms);
            oursCpu += used;
          }
        },
        async () => {
          const cpu = childrenCpuMs();
          const t = await timed(() => wgDump(large.wg.interfaceName));
          const used = childrenCpuMs() - cpu;
          dump = t.value;
          if (measured) {
            wg.push(t.ms);
            wgCpu += used;
          }
        },
      ];
      if (r % 2) readers.reverse();
      for (const read of readers) await read();
      const rt = await timed(() => large.client.getBytes());
      raw = rt.value;
      const p = await timed(() => parseGetBytes(raw));
      if (p.value.peers.length !== opts.peers) throw new Error(`parseGetBytes() returned ${p.value.peers.length} peers`);
      if (measured) {
        roundTrip.push(rt.ms);
        parse.push(p.ms);
      }
    }

    // 2. One single-peer update (replace its allowed IPs) on the large and on the small device.
    log(`single-peer updates on ${opts.peers} and ${opts.smallPeers} peers, ${opts.warmup} + ${opts.runs} runs each...`);
    const random = prng(opts.seed);
    const updateLarge: number[] = [];
    const updateSmall: number[] = [];
    const updateOne = async (device: Device): Promise<number> => {
      const i = Math.floor(random() * device.peers.length);
      const peer = device.peers[i];
      const next: PeerConfig = { ...peer, allowedIPs: toggledAllowedIPs(i, peer.allowedIPs) };
      const t = await timed(() => device.client.putPeer(next, { updateOnly: true }));
      device.peers[i] = next;
      return t.ms;
    };
    for (let r = -opts.warmup; r < opts.runs; r++) {
      const order: Array<[Device, number[]]> = [
        [large, updateLarge],
        [small, updateSmall],
      ];
      if (r % 2) order.reverse();
      for (const [device, samples] of order) {
        const ms = await updateOne(device);
        if (r >= 0) samples.push(ms);
      }
    }

    // The devices must hold exactly what we wrote: every update applied, no peer created or lost, nothing sent.
    checkDevice(large, await large.client.get(), wgDump(large.wg.interfaceName));
    checkDevice(small, await small.client.get(), wgDump(small.wg.interfaceName));
    for (const device of [large, small]) {
      if (device.wg.restarts > 0) throw new Error(`wireguard-go for the ${device.label} device restarted during the benchmark`);
    }

    const get = {
      ours: stats(ours),
      oursRoundTripOnly: stats(roundTrip),
      parseOnly: stats(parse),
      wgDump: stats(wg),
      // Each run's two reads were back to back: their ratio cancels much of the machine's load swings.
      ratioPerRun: stats(ours.map((o, i) => o / wg[i])),
    };
    const update = { large: stats(updateLarge), small: stats(updateSmall) };
    const cpu = cpus();
    return {
      meta: {
        wireguardGo: { binary: opts.binary, version },
        wg: wgVersion,
        node: process.version,
        cpu: `${cpu.length} x ${cpu[0]?.model.trim() ?? 'unknown'}`,
        peers: { large: opts.peers, small: opts.smallPeers },
        runs: opts.runs,
        warmup: opts.warmup,
        seed: opts.seed,
        getAnswerBytes: raw.length,
        getAnswerLines: raw.toString('latin1').split('\n').filter((l) => l !== '').length,
        wgDumpBytes: Buffer.byteLength(dump),
        setup: {
          keygenMs: round(keygen.ms),
          fillLargeMs: round(large.fillMs),
          fillLargeSets: large.fillSets,
          fillSmallMs: round(small.fillMs),
        },
      },
      get: {
        ...get,
        shares: {
          roundTrip: ratio(get.oursRoundTripOnly.medianMs, get.ours.medianMs),
          parse: ratio(get.parseOnly.medianMs, get.ours.medianMs),
        },
        cpuPerReadMs: { ours: round(oursCpu / opts.runs), wgDump: round(wgCpu / opts.runs) },
      },
      update: {
        ...update,
        ratioLargeToSmall: {
          median: ratio(update.large.medianMs, update.small.medianMs),
          p95: ratio(update.large.p95Ms, update.small.p95Ms),
        },
      },
    };
  } finally {
    await Promise.all(started.map((wg) => wg.stop()));
    await box.cleanup();
    process.removeListener('exit', killOnExit);
  }
}

// ---------------------------------------------------------------- output

const int = (n: number): string => n.toLocaleString('en-US');
const ms = (n: number): string => n.toFixed(3);

/** A plain-text table; numbers are right-aligned unless `leftAligned` (for settings). */
function table(header: string[], rows: string[][], leftAligned = false): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const line = (cells: string[]): string =>
    '  ' + cells.map((cell, c) => (c === 0 || leftAligned ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('   ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function statRow(label: string, s: Stats): string[] {
  return [label, ms(s.medianMs), ms(s.p95Ms), ms(s.minMs), ms(s.maxMs)];
}

/** A row of ratios (no unit) in a table of milliseconds. */
function ratioRow(label: string, s: Stats): string[] {
  return [label, ...[s.medianMs, s.p95Ms, s.minMs, s.maxMs].map((x) => `${x.toFixed(2)}x`)];
}

const percent = (fraction: number): string => `${Math.round(fraction * 100)}%`;

function render(res: Result): string {
  const m = res.meta;
  const L = int(m.peers.large);
  const S = int(m.peers.small);
  const head = ['', 'median ms', 'p95 ms', 'min ms', 'max ms'];
  return [
    'UAPI benchmark (bench/uapi.ts)',
    table(
      ['setting', 'value'],
      [
        ['wireguard-go', `${m.wireguardGo.version} (${m.wireguardGo.binary})`],
        ['wg', m.wg],
        ['node', m.node],
        ['cpu', m.cpu],
        ['peers', `${L} (large device), ${S} (small device)`],
        ['runs', `${m.runs} measured per row, after ${m.warmup} warm-up`],
        ['get answer', `${int(m.getAnswerBytes)} bytes, ${int(m.getAnswerLines)} lines (${L} peers)`],
        ['wg dump output', `${int(m.wgDumpBytes)} bytes`],
        ['setup', `keys ${(m.setup.keygenMs / 1000).toFixed(1)} s; fill ${L} peers in ${m.setup.fillLargeSets} sets ${ms(m.setup.fillLargeMs)} ms`],
      ],
      true,
    ),
    '',
    `1. Reading the ${L}-peer device (both readers in every run, alternating which goes first)`,
    table(head, [
      statRow('UapiClient.get() (round trip + parse)', res.get.ours),
      statRow('  its socket round trip alone (getBytes)', res.get.oursRoundTripOnly),
      statRow('  its parse alone (parseGetBytes)', res.get.parseOnly),
      statRow('wg show <if> dump (execFileSync, spawn included)', res.get.wgDump),
      ratioRow('ratio get() / wg dump, per run', res.get.ratioPerRun),
    ]),
    `  shares of get()'s median: socket round trip ${percent(res.get.shares.roundTrip)}, parse ${percent(res.get.shares.parse)} (separate reads: they need not add to 100%)`,
    `  CPU per read (mean of ${m.runs}): get() ${ms(res.get.cpuPerReadMs.ours)} ms in this process; wg dump ${ms(res.get.cpuPerReadMs.wgDump)} ms in the wg process (10 ms ticks)`,
    '',
    '2. One single-peer update (putPeer, updateOnly, replace allowed IPs)',
    table(head, [statRow(`on the ${L}-peer device`, res.update.large), statRow(`on the ${S}-peer device`, res.update.small)]),
    `  ratio ${L} / ${S} peers: ${res.update.ratioLargeToSmall.median.toFixed(2)} at the median, ${res.update.ratioLargeToSmall.p95.toFixed(2)} at p95`,
    '',
  ].join('\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  let opts: Options | null;
  try {
    opts = readOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (opts === null) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const unavailable = networkTestsUnavailable();
  if (unavailable) {
    process.stderr.write(`bench/uapi.ts ${unavailable}\n`);
    return 1;
  }
  const log = (line: string): void => {
    process.stderr.write(`# ${line}\n`);
  };
  const result = await bench(opts, log);
  process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : render(result));
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench/uapi.ts failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);

/**
 * `aks-mesh version`: which build this is (package.json's version and the git commit) and which
 * wireguard-go the agent would run, with that binary's own `--version`. In the image both are fixed
 * at build time (scripts/build.ts defines them in the bundle); from a checkout they are read from
 * package.json and git. A missing or broken wireguard-go is reported, not fatal: the command is what an
 * operator runs to find out why an agent does not start.
 */
import type { Argv } from 'yargs';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findWireguardGo, wireguardGoVersion } from '../../native/index.ts';

// Replaced by esbuild's `define` in the bundle (scripts/build.ts); undeclared when run from source.
declare const __AKS_MESH_VERSION__: string | undefined;
declare const __AKS_MESH_COMMIT__: string | undefined;

export interface VersionInfo {
  /** package.json's version. */
  version: string;
  /** The git commit built from, or null when unknown. */
  commit: string | null;
  /** bundle: the image's (or dist/) esbuild bundle; source: TypeScript run from a checkout. */
  build: 'bundle' | 'source';
  node: string;
  wireguardGo: { path: string; version: string } | { path: string | null; error: string };
}

function sourceRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

function sourceCommit(root: string): string | null {
  try {
    const head = execFileSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return head || null;
  } catch {
    return null; // not a checkout (an unpacked tarball), or no git installed
  }
}

/**
 * package.json's version, cheaply (no git, no wireguard-go): what `aks-mesh --version` should print,
 * since yargs' own lookup finds no package.json beside the bundle and says "unknown".
 */
export function packageVersion(): string {
  if (typeof __AKS_MESH_VERSION__ === 'string') return __AKS_MESH_VERSION__;
  return (JSON.parse(readFileSync(join(sourceRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/** Our version and commit, and whether this runs from the bundle or from source. */
export function ourVersion(): Pick<VersionInfo, 'version' | 'commit' | 'build'> {
  if (typeof __AKS_MESH_VERSION__ === 'string') {
    const commit = typeof __AKS_MESH_COMMIT__ === 'string' && __AKS_MESH_COMMIT__ ? __AKS_MESH_COMMIT__ : null;
    return { version: __AKS_MESH_VERSION__, commit, build: 'bundle' };
  }
  return { version: packageVersion(), commit: sourceCommit(sourceRoot()), build: 'source' };
}

/** The version, the commit and the wireguard-go that `--wireguard-go` (or the default search) picks. */
export function versionInfo(wireguardGoFlag?: string): VersionInfo {
  const { version, commit, build } = ourVersion();
  let wireguardGo: VersionInfo['wireguardGo'];
  let path: string | null = null;
  try {
    path = wireguardGoFlag ?? findWireguardGo();
    wireguardGo = { path, version: wireguardGoVersion(path) };
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    wireguardGo = { path, error: path ? `${path} --version failed: ${reason}` : reason };
  }
  return { version, commit, build, node: process.version, wireguardGo };
}

export function formatVersion(info: VersionInfo): string {
  // 12 hex digits name a commit; a "-dirty" suffix (built from uncommitted sources) stays visible.
  const commit = info.commit ? `commit ${info.commit.replace(/^([0-9a-f]{12})[0-9a-f]*/, '$1')}` : 'commit unknown';
  const lines = [`aks-mesh ${info.version} (${commit}, ${info.build})`];
  if ('version' in info.wireguardGo) lines.push(`wireguard-go ${info.wireguardGo.version} (${info.wireguardGo.path})`);
  else lines.push(`wireguard-go MISSING: ${info.wireguardGo.error}`);
  lines.push(`node ${info.node}`);
  return `${lines.join('\n')}\n`;
}

interface VersionArgs {
  json?: boolean;
  'wireguard-go'?: string;
}

export function versionCommand(y: Argv): Argv {
  return y.command<VersionArgs>(
    'version',
    "Print aks-mesh's version and commit, and the version of the wireguard-go the agent would run (or why there is none)",
    (c) =>
      c
        .option('json', { type: 'boolean', default: false, describe: 'One JSON object: version, commit, build, node, wireguardGo {path, version} or {path, error}' })
        .option('wireguard-go', { type: 'string', describe: 'Check this wireguard-go binary instead of the one the agent finds ($AKS_MESH_WIREGUARD_GO, the bundled build, then PATH)' })
        .example('$0 version', 'aks-mesh 0.1.0 (commit 0123456789ab, bundle) / wireguard-go v0.0.20230223 (/usr/bin/wireguard-go) / node v24.21.0') as unknown as Argv<VersionArgs>,
    (a) => {
      const info = versionInfo(a['wireguard-go']);
      process.stdout.write(a.json ? `${JSON.stringify(info)}\n` : formatVersion(info));
    },
  );
}

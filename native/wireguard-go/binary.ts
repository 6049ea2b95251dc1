/**
 * Which wireguard-go binary to run. In order: $AKS_MESH_WIREGUARD_GO; the Debian trixie build that
 * native/wireguard-go/fetch.sh caches (the one we ship in the image); `wireguard-go` on PATH.
 */
import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { NativeError } from '../errors.ts';

export function cacheDir(): string {
  return process.env.AKS_MESH_CACHE ?? join(homedir(), '.cache', 'aks-mesh');
}

/** Where fetch.sh leaves the trixie binary. */
export function trixieBinaryPath(): string {
  return join(cacheDir(), 'wireguard-go-trixie', 'root', 'usr', 'bin', 'wireguard-go');
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function findWireguardGo(): string {
  const fromEnv = process.env.AKS_MESH_WIREGUARD_GO;
  if (fromEnv) {
    if (!executable(fromEnv)) {
      throw new NativeError('process', `AKS_MESH_WIREGUARD_GO=${fromEnv} is not an executable file`);
    }
    return fromEnv;
  }
  const trixie = trixieBinaryPath();
  if (executable(trixie)) return trixie;
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    const candidate = join(dir, 'wireguard-go');
    if (executable(candidate)) return candidate;
  }
  throw new NativeError(
    'process',
    'wireguard-go not found: run native/wireguard-go/fetch.sh (the version we ship), or apt-get install wireguard-go, or set AKS_MESH_WIREGUARD_GO',
  );
}

/** "v0.0.20230223" from `wireguard-go --version`. */
export function wireguardGoVersion(binary: string): string {
  const out = execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 5000 });
  return /v\d+\.\d+\.\d+/.exec(out)?.[0] ?? out.split('\n')[0];
}

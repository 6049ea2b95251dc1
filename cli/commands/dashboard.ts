/**
 * `aks-mesh dashboard`: a live page of the mesh on localhost (dashboard/server.ts): members, the
 * health of each pair from the members' status, refused objects and why, and the live peers and
 * traffic of a selected member relayed from its agent's stream.
 */
import { lstatSync, readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { UsageError } from '../format.ts';
import { loadKubeConfig } from '../kubeconfig.ts';

interface DashboardArgs {
  kubeconfig?: string;
  address: string;
  stream: string[];
  'stream-token-file'?: string;
  'allow-remote': boolean;
}

export const DEFAULT_DASHBOARD_ADDRESS = '127.0.0.1:9590';
/** A token file larger than this is not a token. */
const MAX_TOKEN_BYTES = 4096;

/** host:port or [v6]:port, port 0-65535 (0: any free port). */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--address ${address}: expected host:port or [IPv6]:port, e.g. ${DEFAULT_DASHBOARD_ADDRESS}`);
  return { host: m[1] ?? m[2], port };
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** `--stream member=ws://host:port`, as many as given. */
export function parseStreams(values: string[]): Array<{ member: string; url: string }> {
  return values.map((v) => {
    const eq = v.indexOf('=');
    const member = eq > 0 ? v.slice(0, eq) : '';
    if (!member || !/^((Peer|Gateway)\/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(member)) {
      throw new UsageError(`--stream ${v}: expected <member>=ws://host:port, where <member> is a Peer or Gateway name (optionally Peer/<name> or Gateway/<name>)`);
    }
    return { member, url: v.slice(eq + 1) };
  });
}

/** The agents' stream token: --stream-token-file (a regular file, at most 4 KiB, trimmed), else $AKS_MESH_STREAM_TOKEN. */
export function readStreamToken(file: string | undefined, env: string | undefined): string | undefined {
  if (file === undefined) return env?.trim() || undefined;
  let text: string;
  try {
    const st = lstatSync(file);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_TOKEN_BYTES) throw new Error(`larger than ${MAX_TOKEN_BYTES} bytes`);
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new UsageError(`--stream-token-file ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!text) throw new UsageError(`--stream-token-file ${file}: empty`);
  return text;
}

export function dashboardCommand(y: Argv): Argv {
  return y.command<DashboardArgs>(
    'dashboard',
    'Serve a live page of the mesh on localhost: members, the health of each pair, refused objects, live peers and traffic of a member',
    (c) =>
      c
        .option('kubeconfig', { type: 'string', describe: 'kubeconfig file for the cluster view (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' })
        .option('address', {
          type: 'string',
          default: DEFAULT_DASHBOARD_ADDRESS,
          describe: 'Where to serve the page (host:port; port 0 picks a free one). Loopback only unless --allow-remote',
        })
        .option('stream', {
          type: 'string',
          array: true,
          default: [],
          describe:
            'An agent\'s or gateway\'s live stream for the detail of that member, as <member>=ws://host:port (repeatable), e.g. ' +
            'node-a=ws://127.0.0.1:19587 after `kubectl -n aks-mesh port-forward pod/<agent pod on node-a> 19587:9587`',
        })
        .option('stream-token-file', {
          type: 'string',
          describe: 'File holding the streams\' token (default: $AKS_MESH_STREAM_TOKEN); sent to the agents only, never to the page',
        })
        .option('allow-remote', {
          type: 'boolean',
          default: false,
          describe: 'Allow a non-loopback --address. The page has NO authentication: anyone who reaches it sees the cluster view and the live streams',
        })
        .check((a) => {
          const { host } = parseAddress(a.address);
          if (!isLoopbackHost(host) && !a['allow-remote']) {
            throw new UsageError(`--address ${a.address}: not a loopback address; the page has no authentication, so serving it to the network needs --allow-remote`);
          }
          parseStreams(a.stream.map(String));
          return true;
        })
        .example('$0 dashboard', `serve on http://${DEFAULT_DASHBOARD_ADDRESS}/ from the current kubeconfig`)
        .example('$0 dashboard --stream node-a=ws://127.0.0.1:19587 --stream-token-file token', 'with live detail for node-a through a port-forward') as unknown as Argv<DashboardArgs>,
    async (a) => {
      const { host, port } = parseAddress(a.address);
      const streams = parseStreams(a.stream.map(String));
      const token = readStreamToken(a['stream-token-file'], process.env.AKS_MESH_STREAM_TOKEN);
      const { normalizeStreamUrl, startDashboard } = await import('../../dashboard/server.ts');
      for (const s of streams) {
        try {
          normalizeStreamUrl(s.member, s.url);
        } catch (err) {
          throw new UsageError((err as Error).message);
        }
      }
      const { createLogger } = await import('../../native/index.ts');
      const log = createLogger({ component: 'dashboard', format: process.stderr.isTTY ? 'text' : 'json' });
      const kc = await loadKubeConfig(a.kubeconfig);
      let dashboard;
      try {
        dashboard = await startDashboard({ kubeConfig: kc, host, port, allowRemote: a['allow-remote'], streams, streamToken: token, log });
      } catch (err) {
        throw new Error(`--address ${a.address}: cannot serve: ${(err as Error).message.split('\n')[0]}`, { cause: err });
      }
      if (!isLoopbackHost(host)) process.stderr.write(`warning: serving on ${a.address} WITHOUT authentication (--allow-remote): anyone who reaches it sees the mesh\n`);
      process.stdout.write(`aks-mesh dashboard: ${dashboard.url}\n`);
      const d = dashboard;
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void d.close().then(resolve, resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    },
  );
}

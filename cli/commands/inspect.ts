import { existsSync } from 'node:fs';
import type { Argv } from 'yargs';
import { DEFAULT_SOCKET_DIR, NativeError, UapiClient, redactSecrets, socketPathFor } from '../../native/index.ts';
import { UsageError, formatText, toJson } from '../format.ts';
import { readTokenFile } from '../member-stream.ts';

interface InspectArgs {
  interface?: string;
  socket?: string;
  'socket-dir': string;
  json: boolean;
  'show-keys': boolean;
  timeout: number;
  watch: boolean;
  interval: number;
  names: boolean;
  kubeconfig?: string;
  url?: string;
  token?: string;
  'token-file'?: string;
}

export function inspectCommand(y: Argv): Argv {
  return y.command<InspectArgs>(
    'inspect',
    'Show a wireguard-go device read through its UAPI socket, the way "wg show" does (or as JSON)',
    (c) =>
      c
        .option('interface', { alias: 'i', type: 'string', describe: 'Interface name; reads <socket-dir>/<interface>.sock' })
        .option('socket', { alias: 's', type: 'string', describe: 'Path of a UAPI socket (instead of --interface)' })
        .option('socket-dir', { type: 'string', default: DEFAULT_SOCKET_DIR, describe: 'Where wireguard-go puts its sockets' })
        .option('json', { type: 'boolean', default: false, describe: 'Print JSON (counters as decimal strings, handshakes as Unix seconds)' })
        .option('show-keys', {
          type: 'boolean',
          default: false,
          describe: 'Print private and preshared keys instead of "(hidden)" (errors never show them)',
        })
        .option('timeout', { type: 'number', default: 5000, describe: 'UAPI timeout in milliseconds' })
        .option('watch', {
          alias: 'w',
          type: 'boolean',
          default: false,
          describe:
            'Read the device again every --interval and show per-peer rx/tx rates and handshake age: redrawn in place on a terminal; ' +
            'elsewhere a block only when the device changed; with --json one JSON object per line per read. A device that goes away ' +
            'is reported and watched until it returns; Ctrl-C or SIGTERM stops (exit 0)',
        })
        .option('interval', { type: 'number', default: 1000, describe: 'With --watch: milliseconds between reads (at least 100)' })
        .option('names', {
          type: 'boolean',
          default: false,
          describe:
            'Name each peer by the Peer or Gateway holding its public key (read from the Kubernetes API; with --watch, again every 30 s). ' +
            'If the API cannot be read, a warning goes to stderr and the device is shown without names',
        })
        .option('kubeconfig', { type: 'string', describe: 'With --names (implies it): kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' })
        .option('url', {
          type: 'string',
          describe:
            "An agent's or gateway's live stream instead of a local socket: ws://host:port (such as ws://127.0.0.1:9587 after " +
            'kubectl port-forward to an agent pod). Peers are named by the member; keys are never sent',
        })
        .option('token-file', { type: 'string', describe: 'With --url: file holding the stream token (the chart keeps it in Secret aks-mesh-stream-token)' })
        .option('token', { type: 'string', describe: 'With --url: the stream token itself (visible to other users in ps; prefer --token-file or AKS_MESH_STREAM_TOKEN)' })
        .conflicts('interface', 'socket')
        .conflicts('token', 'token-file')
        .check((a) => {
          if (a.url) {
            // The stream names peers itself and never carries keys; a local device has no place here.
            const clash = (['interface', 'socket', 'kubeconfig'] as const).find((k) => a[k] !== undefined) ?? (a.names ? 'names' : a['show-keys'] ? 'show-keys' : undefined);
            if (clash) throw new UsageError(`--url and --${clash} exclude each other: the stream names its peers and never sends keys`);
          }
          if ((a.token !== undefined || a['token-file'] !== undefined) && !a.url) throw new UsageError('--token and --token-file go with --url (the stream of an agent or gateway)');
          if (!a.interface && !a.socket && !a.url) throw new UsageError('say which device: --interface <name>, --socket <path> or --url ws://host:port');
          // A file the operator named that is not there is a mistake (exit 2); an API that cannot be
          // read is only a warning (the device is still shown).
          if (a.kubeconfig !== undefined && !existsSync(a.kubeconfig)) throw new UsageError(`--kubeconfig ${a.kubeconfig}: no such file`);
          if (!Number.isFinite(a.interval) || a.interval < 100) throw new UsageError(`--interval ${a.interval}: must be a number of milliseconds, at least 100`);
          if (!Number.isFinite(a.timeout) || a.timeout <= 0) throw new UsageError(`--timeout ${a.timeout}: must be a positive number of milliseconds`);
          return true;
        })
        .example('$0 inspect -i wg-mesh --watch', 'live view with rates, redrawn every second')
        .example('$0 inspect --url ws://127.0.0.1:9587 --token-file token --watch', "an agent's device through kubectl port-forward ds/aks-mesh-agent 9587")
        .example('$0 inspect -i wg-mesh', 'the node agent’s device')
        .example('$0 inspect -i wg-mesh --names --kubeconfig ~/.kube/config', 'peers named by their Peer/Gateway')
        .example('$0 inspect --socket /var/run/wireguard/wg-gw.sock --json', 'a gateway’s device as JSON') as unknown as Argv<InspectArgs>,
    async (a) => {
      if (a.url) {
        const token = streamToken(a);
        const remote = await import('../inspect-remote.ts');
        const o = { url: remote.streamUrl(a.url), token, timeoutMs: a.timeout, json: a.json };
        await (a.watch ? remote.watchRemote(o) : remote.inspectRemote(o));
        return;
      }
      const socketPath = a.socket ?? socketPathFor(a.interface as string, a['socket-dir']);
      const interfaceName = a.interface ?? socketPath.replace(/^.*\//, '').replace(/\.sock$/, '');
      const wantNames = a.names || a.kubeconfig !== undefined;
      // Names only help: without them the device view is still what the operator came for.
      const loadNames = wantNames
        ? async (): Promise<Map<string, string> | undefined> => {
            const { loadPeerNames } = await import('../inspect-names.ts');
            return loadPeerNames(a.kubeconfig).catch((err: unknown) => {
              process.stderr.write(`aks-mesh: warning: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}; peers shown without names\n`);
              return undefined;
            });
          }
        : undefined;
      if (a.watch) {
        const { watchDevice } = await import('../inspect-watch.ts');
        await watchDevice({ socketPath, interfaceName, intervalMs: a.interval, timeoutMs: a.timeout, json: a.json, showKeys: a['show-keys'], loadNames });
        return;
      }
      const names = loadNames ? loadNames() : undefined;
      const device = await new UapiClient(socketPath, { timeoutMs: a.timeout }).get().catch((err: unknown) => {
        // NativeErrors are redacted when made; anything else is, here, before the CLI prints it.
        if (err instanceof NativeError || !(err instanceof Error)) throw err;
        throw new Error(redactSecrets(err.message));
      });
      const options = { interfaceName, showKeys: a['show-keys'], names: names && ((await names) ?? new Map<string, string>()) };
      process.stdout.write(a.json ? `${JSON.stringify(toJson(device, options), null, 2)}\n` : formatText(device, options));
    },
  );
}

/** --token, --token-file or $AKS_MESH_STREAM_TOKEN (in that order); undefined when none is given. */
function streamToken(a: InspectArgs): string | undefined {
  if (a.token !== undefined) {
    if (!a.token.trim()) throw new UsageError('--token: empty');
    return a.token.trim();
  }
  if (a['token-file'] !== undefined) {
    // "no such file" rather than ENOENT; a file others may change is refused, one they may read warned about.
    return readTokenFile(a['token-file'], '--token-file', (m) => process.stderr.write(`aks-mesh: warning: ${m}\n`));
  }
  return process.env.AKS_MESH_STREAM_TOKEN?.trim() || undefined;
}

import type { Argv } from 'yargs';
import { DEFAULT_SOCKET_DIR, NativeError, UapiClient, redactSecrets, socketPathFor } from '../../native/index.ts';
import { UsageError, formatText, toJson } from '../format.ts';

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
        .conflicts('interface', 'socket')
        .check((a) => {
          if (!a.interface && !a.socket) throw new UsageError('say which device: --interface <name> or --socket <path>');
          if (!Number.isFinite(a.interval) || a.interval < 100) throw new UsageError(`--interval ${a.interval}: must be a number of milliseconds, at least 100`);
          if (!Number.isFinite(a.timeout) || a.timeout <= 0) throw new UsageError(`--timeout ${a.timeout}: must be a positive number of milliseconds`);
          return true;
        })
        .example('$0 inspect -i wg-mesh --watch', 'live view with rates, redrawn every second')
        .example('$0 inspect -i wg-mesh', 'the node agent’s device')
        .example('$0 inspect -i wg-mesh --names --kubeconfig ~/.kube/config', 'peers named by their Peer/Gateway')
        .example('$0 inspect --socket /var/run/wireguard/wg-gw.sock --json', 'a gateway’s device as JSON') as unknown as Argv<InspectArgs>,
    async (a) => {
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

/**
 * `aks-mesh gateway-patch`: the gateway sidecar (gateway/sidecar.ts) as a strategic-merge patch for an
 * existing Konnectivity agent Deployment, and with --rbac the ClusterRoleBinding that gives the
 * Deployment's service account the gateway's own ClusterRole. The patch alone goes to stdout (so
 * `> patch.yaml` is the file kubectl wants); what to run next goes to stderr.
 */
import type { Argv } from 'yargs';
import { stringify } from 'yaml';
import { splitList } from '../../gateway/flags.ts';
import { DEFAULT_SIDECAR_NAME, GATEWAY_CLUSTER_ROLE, SIDECAR_SETTING_DEFAULTS, gatewayRoleBinding, gatewaySidecar, gatewaySidecarPatch, sidecarNameProblem } from '../../gateway/sidecar.ts';
import { SERVICE_ACCOUNT_PATTERN } from '../../mesh/values-schema.ts';
import { UsageError } from '../format.ts';

interface GatewayPatchArgs {
  image?: string;
  'pod-cidr'?: string[];
  'container-name': string;
  deployment: string;
  namespace: string;
  'service-account'?: string;
  rbac: boolean;
  'image-pull-policy': 'Always' | 'IfNotPresent' | 'Never';
  'listen-port'?: number;
  'host-port': boolean;
  'mesh-cidr'?: string;
  'service-cidr'?: string[];
  'cluster-cidr'?: string[];
  'node-cidr'?: string[];
  'stream-token-secret'?: string;
  fwmark: string;
  table: number;
  'rule-priority': number;
  keepalive: number;
  resync: number;
  'log-level': 'error' | 'warn' | 'info' | 'debug';
  'log-format': 'json' | 'text';
  output: 'yaml' | 'json';
}

const EXAMPLE = `aks-mesh gateway-patch --image registry.example/aks-mesh:1.0.0 --pod-cidr 10.244.0.0/16 > patch.yaml
  kubectl -n kube-system patch deployment konnectivity-agent --patch-file patch.yaml`;

export function gatewayPatchCommand(y: Argv): Argv {
  return y.command<GatewayPatchArgs>(
    'gateway-patch',
    'Print the gateway sidecar as a strategic-merge patch for an existing Konnectivity agent Deployment (kubectl patch --patch-file), or with --rbac the ClusterRoleBinding its service account needs',
    (c) =>
      c
        .usage(
          '$0 gateway-patch --image IMAGE --pod-cidr CIDR[,CIDR...] [options]\n\n' +
            'Prints a patch that adds the aks-mesh gateway container, with its volumes, to the pod template of the ' +
            'Konnectivity agent Deployment: the original snippet (command ./gateway, --node-name=$(NODE_NAME) ' +
            '--gateway-endpoint=$(NODE_IP) --pod-cidr=...), NET_ADMIN only, /dev/net/tun, a read-only root filesystem ' +
            'with memory emptyDirs for the UAPI socket and the private key (regenerated with each pod; its Gateway ' +
            'carries the public key), and a UDP hostPort (51821) so that nodes reach the gateway on the node\'s ' +
            'address. Containers and volumes merge by name: the Konnectivity agent\'s own are left alone and a second ' +
            'patch changes nothing. The gateway talks to the API server with the pod\'s service account: bind it to ' +
            `the ClusterRole ${GATEWAY_CLUSTER_ROLE} (installed by the chart) with --rbac --service-account NAMESPACE/NAME, ` +
            'and list that account in the chart value gatewayServiceAccounts (--set gatewayServiceAccounts={NAMESPACE/NAME}) so ' +
            'that the node-bound-writes admission policy binds its writes to its node as it does aks-mesh-gateway\'s; ' +
            'otherwise any token of that account, the Konnectivity agent container\'s too, may rewrite every Gateway. ' +
            'The sidecar mounts its own API token, so the pod may set automountServiceAccountToken: false. ' +
            'Run at most one such pod per node (a required podAntiAffinity on kubernetes.io/hostname, or the hostPort): ' +
            'the gateway names its Gateway after its node, so two on one node overwrite each other\'s. A Gateway whose ' +
            'pod moved to another node stays until deleted (kubectl delete mgw NAME).',
        )
        .option('image', { type: 'string', describe: 'The aks-mesh image (required for the patch)' })
        .option('pod-cidr', { type: 'string', array: true, coerce: splitList, describe: 'Pod CIDRs the gateway routes through its tunnel; repeated and/or comma-separated (required for the patch)' })
        .option('container-name', { type: 'string', default: DEFAULT_SIDECAR_NAME, describe: 'Name of the sidecar container (its volumes are named after it)' })
        .option('deployment', { type: 'string', default: 'konnectivity-agent', describe: 'The Konnectivity agent Deployment (for the kubectl command printed on stderr)' })
        .option('namespace', { type: 'string', default: 'kube-system', describe: 'Its namespace (for the kubectl command printed on stderr)' })
        .option('service-account', { type: 'string', describe: `NAMESPACE/NAME of the Deployment's service account, which needs the ClusterRole ${GATEWAY_CLUSTER_ROLE}` })
        .option('rbac', { type: 'boolean', default: false, describe: `Print the ClusterRoleBinding of --service-account to ${GATEWAY_CLUSTER_ROLE} instead of the patch (kubectl apply -f -)` })
        .option('image-pull-policy', { choices: ['Always', 'IfNotPresent', 'Never'] as const, default: 'IfNotPresent' as const, describe: 'The sidecar\'s imagePullPolicy' })
        .option('listen-port', { type: 'number', describe: 'UDP port of the gateway and of its hostPort (default 51821: not the node agent\'s 51820, which the node\'s address already serves)' })
        .option('host-port', { type: 'boolean', default: true, describe: 'Publish the listen port on the node\'s address (--no-host-port where the CNI has no hostPort support: nodes then answer the gateway where its packets come from)' })
        .option('mesh-cidr', { type: 'string', describe: 'The mesh CIDR, when not the default (AKS_MESH_MESH_CIDR in the container)' })
        .option('service-cidr', { type: 'string', array: true, coerce: splitList, describe: "The cluster's service CIDRs, when not the default (the same on every member)" })
        .option('cluster-cidr', { type: 'string', array: true, coerce: splitList, describe: "The cluster's pod CIDRs, when not the default (the same on every member)" })
        .option('node-cidr', { type: 'string', array: true, coerce: splitList, describe: 'The node subnets, when not the default (the same on every member)' })
        // The agents' safety settings, with the chart's defaults (mesh.*, agent.logLevel/logFormat): set
        // each to what the cluster's agents run with, so the gateway marks, routes and renews the same way.
        .option('fwmark', { type: 'string', default: SIDECAR_SETTING_DEFAULTS.fwmark, describe: "Mark on wireguard-go's own packets (decimal or 0x hex), as the agents' (chart mesh.fwmark)" })
        .option('table', { type: 'number', default: SIDECAR_SETTING_DEFAULTS.table, describe: 'Routing table of the mesh routes (chart mesh.table)' })
        .option('rule-priority', { type: 'number', default: SIDECAR_SETTING_DEFAULTS.rulePriority, describe: 'Priority of the mesh ip rule (chart mesh.rulePriority)' })
        .option('keepalive', { type: 'number', default: SIDECAR_SETTING_DEFAULTS.keepalive, describe: 'Persistent keepalive in seconds, 0: off (chart mesh.keepalive); per-peer health needs it on idle pairs' })
        .option('resync', { type: 'number', default: SIDECAR_SETTING_DEFAULTS.resync, describe: 'Seconds between full reconcile passes (chart mesh.resyncSeconds)' })
        .option('log-level', { choices: ['error', 'warn', 'info', 'debug'] as const, default: SIDECAR_SETTING_DEFAULTS.logLevel, describe: 'The gateway\'s log level (chart agent.logLevel)' })
        .option('log-format', { choices: ['json', 'text'] as const, default: SIDECAR_SETTING_DEFAULTS.logFormat, describe: 'The gateway\'s log format (chart agent.logFormat): JSON for a log collector' })
        .option('stream-token-secret', {
          type: 'string',
          describe:
            'A Secret in the Deployment\'s namespace (key "token", at least 16 printable characters) that the gateway\'s live stream (127.0.0.1:9588 in the pod, ' +
            'aks-mesh inspect --url through kubectl port-forward) asks every client for. Without it the stream is off: it would share the pod\'s loopback ' +
            'with the Konnectivity agent without a token. The Secret must exist before the patch (the pod does not start without it); ' +
            'the chart\'s: kubectl -n <release namespace> get secret aks-mesh-stream-token -o jsonpath=\'{.data.token}\' | base64 -d > stream.token; ' +
            'kubectl -n kube-system create secret generic aks-mesh-stream-token --from-file=token=stream.token',
        })
        .option('output', { alias: 'o', choices: ['yaml', 'json'] as const, default: 'yaml' as const, describe: 'Output format' })
        .example(EXAMPLE, '')
        .example('aks-mesh gateway-patch --rbac --service-account kube-system/konnectivity-agent | kubectl apply -f -', '')
        .check((a) => {
          if (a.rbac) {
            if (!a['service-account']) throw new UsageError('--rbac needs --service-account NAMESPACE/NAME');
          } else {
            if (!a.image) throw new UsageError('--image: required (the aks-mesh image, such as registry.example/aks-mesh:1.0.0)');
            if (!a['pod-cidr']?.length) throw new UsageError('--pod-cidr: required (the pod CIDRs the gateway routes, such as 10.244.0.0/16)');
          }
          const nameProblem = sidecarNameProblem(a['container-name']);
          if (nameProblem) throw new UsageError(`--container-name ${nameProblem}`);
          const port = a['listen-port'];
          if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new UsageError(`--listen-port ${port}: expected 1 to 65535`);
          const secret = a['stream-token-secret'];
          if (secret !== undefined && !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(secret)) {
            throw new UsageError(`--stream-token-secret ${JSON.stringify(secret)}: expected a Secret name (lower case letters, digits, '-' and '.')`);
          }
          const sa = a['service-account'];
          if (sa !== undefined && !new RegExp(SERVICE_ACCOUNT_PATTERN).test(sa)) {
            throw new UsageError(`--service-account ${JSON.stringify(sa)}: expected NAMESPACE/NAME, such as kube-system/konnectivity-agent`);
          }
          return true;
        }) as unknown as Argv<GatewayPatchArgs>,
    async (a) => {
      const print = (object: unknown): void => {
        // YAML 1.1 quoting: kubectl reads YAML 1.1, where a bare off, yes or no is a boolean (the
        // stream's AKS_MESH_STREAM_ADDRESS "off" would reach the API server as false).
        process.stdout.write(a.output === 'json' ? `${JSON.stringify(object, null, 2)}\n` : stringify(object, { lineWidth: 0, version: '1.1' }));
      };
      if (a.rbac) {
        const sa = a['service-account'] as string;
        const [namespace, name] = sa.split('/') as [string, string];
        print(gatewayRoleBinding({ namespace, name }));
        // The chart's admission policy knows only its own aks-mesh-gateway account (in the release
        // namespace, which this command does not know): any other gets the gateway's write rights
        // without the node binding until it is listed in gatewayServiceAccounts.
        const upgrade = `helm upgrade <release> <chart> --reuse-values --set 'gatewayServiceAccounts={${sa}}' (plus any accounts already listed)`;
        if (name !== 'aks-mesh-gateway') {
          process.stderr.write(
            `warning: ${sa} is not the chart's aks-mesh-gateway account, so the node-bound-writes admission policy does not bind its writes to its node ` +
              `until the chart lists it: ${upgrade}; until then any token of ${sa} (every container of its pods) may rewrite every Gateway\n`,
          );
        } else {
          process.stderr.write(`# if ${namespace} is not the chart's release namespace, have the node-bound-writes policy cover the account: ${upgrade}\n`);
        }
        return;
      }
      const { canonicalCidr } = await import('../../native/index.ts');
      // The whole value in the message: "--pod-cidr 10.300.0.0/16: ..." (a comma list is split first).
      const cidr = (flag: string, value: string): string => {
        try {
          return canonicalCidr(value);
        } catch (err) {
          throw new UsageError(`--${flag} ${JSON.stringify(value)}: ${(err as Error).message.replace(/^[^:]*: /, '')}`);
        }
      };
      const list = (flag: string, values: string[] | undefined): string[] | undefined => values?.map((c) => cidr(flag, c));
      const podCIDRs = list('pod-cidr', a['pod-cidr']) as string[];
      // The library names its option (fwmark, rulePriority…); the user typed the flag.
      const flagOf: Record<string, string> = { fwmark: '--fwmark', table: '--table', rulePriority: '--rule-priority', keepalive: '--keepalive', resync: '--resync' };
      const build = (o: Parameters<typeof gatewaySidecar>[0]): ReturnType<typeof gatewaySidecar> => {
        try {
          return gatewaySidecar(o);
        } catch (err) {
          const message = (err as Error).message;
          const option = /^(\w+) /.exec(message)?.[1] ?? '';
          if (flagOf[option]) throw new UsageError(`${flagOf[option]}${message.slice(option.length)}`);
          throw err;
        }
      };
      const sidecar = build({
        image: a.image as string,
        podCIDRs,
        name: a['container-name'],
        imagePullPolicy: a['image-pull-policy'],
        hostPort: a['host-port'],
        ...(a['listen-port'] === undefined ? {} : { listenPort: a['listen-port'] }),
        ...(a['mesh-cidr'] === undefined ? {} : { meshCIDR: cidr('mesh-cidr', a['mesh-cidr']) }),
        ...(a['service-cidr'] ? { serviceCIDRs: list('service-cidr', a['service-cidr']) } : {}),
        ...(a['cluster-cidr'] ? { clusterCIDRs: list('cluster-cidr', a['cluster-cidr']) } : {}),
        ...(a['node-cidr'] ? { nodeCIDRs: list('node-cidr', a['node-cidr']) } : {}),
        ...(a['stream-token-secret'] ? { streamTokenSecret: a['stream-token-secret'] } : {}),
        fwmark: a.fwmark,
        table: a.table,
        rulePriority: a['rule-priority'],
        keepalive: a.keepalive,
        resync: a.resync,
        logLevel: a['log-level'],
        logFormat: a['log-format'],
      });
      print(gatewaySidecarPatch(sidecar));
      const sa = a['service-account'] ? ` --service-account ${a['service-account']}` : ' --service-account NAMESPACE/NAME';
      process.stderr.write(
        `# apply: kubectl -n ${a.namespace} patch deployment ${a.deployment} --patch-file <this output>\n` +
          `# and give the Deployment's service account the gateway's permissions: aks-mesh gateway-patch --rbac${sa} | kubectl apply -f -\n` +
          '# keep one such pod per node (podAntiAffinity on kubernetes.io/hostname): two gateways on one node write the same Gateway\n' +
          (a['stream-token-secret']
            ? `# the pod needs Secret ${a['stream-token-secret']} (key token) in ${a.namespace} before it starts\n`
            : '# the live stream is off (no --stream-token-secret): inspect it with kubectl exec ... aks-mesh inspect, or status --local\n'),
      );
    },
  );
}

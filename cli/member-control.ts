/**
 * The member's local control socket (issue 12; mesh/control.ts): its flag, and what each request
 * asks of the running member. `aks-mesh status --local`, `aks-mesh reconcile` and `aks-mesh diff`
 * (cli/control-client.ts) are its clients.
 */
import type { Argv } from 'yargs';
import type { MemberService, ServiceContext } from './member-services.ts';

export const CONTROL_FLAG_NAMES: readonly string[] = ['control-socket'];
export interface ControlArgs {
  'control-socket'?: string;
  interface: string;
}

/** /var/run/aks-mesh/<interface>.sock (kept here too, so parsing the flags loads nothing of mesh/). */
export function defaultControlSocketPath(interfaceName: string): string {
  return `/var/run/aks-mesh/${interfaceName}.sock`;
}

export function controlFlags<T>(y: Argv<T>): Argv<T> {
  return y.option('control-socket', {
    type: 'string',
    describe:
      'Unix socket for `aks-mesh status --local`, `reconcile` and `diff` (default /var/run/aks-mesh/<interface>.sock; "off" disables). ' +
      'Owner-only: the socket is 0600 and its directory, when created, 0700; a stale socket of a dead agent is replaced, a live one refused; ' +
      'an existing directory others may write to is refused, or warned about when sticky (/tmp), and the clients refuse a socket not owned by root or by themselves',
  }) as unknown as Argv<T>;
}

/**
 * Start the member's control socket. `defaultSocket` picks the path when no flag names one (a test
 * puts the default somewhere of its own; the member always uses /var/run/aks-mesh).
 */
export async function startControl(args: ControlArgs, ctx: ServiceContext, defaultSocket: (interfaceName: string) => string = defaultControlSocketPath): Promise<MemberService | null> {
  const explicit = Boolean(args['control-socket']);
  const path = args['control-socket'] || defaultSocket(args.interface);
  if (path === 'off') return null;
  const { ControlServer, diffAnswer, passSummary, statusAnswer } = await import('../mesh/control.ts');
  const { member, log } = ctx;
  const reconciler = member.reconciler;
  let server;
  try {
    server = await start();
  } catch (err) {
    // A socket the operator asked for must work. The default one is a diagnostic aid: where it
    // cannot be made (a read-only root file system without a volume at /var/run/aks-mesh, another
    // agent already on it) the member runs without it rather than not at all, and says so.
    if (explicit) throw err;
    log.error('control socket not started: status --local, reconcile and diff will not answer (set --control-socket, or mount a writable /var/run/aks-mesh)', { error: (err as Error).message });
    return null;
  }
  log.info('control socket listening', { socket: path });
  return { close: () => server.close() };

  function start(): ReturnType<typeof ControlServer.start> {
    return ControlServer.start(
      path,
      {
        status: async () => {
          let preview = null;
          let previewError: string | undefined;
          try {
            preview = await reconciler.preview();
          } catch (err) {
            previewError = (err as Error).message;
          }
          return statusAnswer({
            member: { role: ctx.role, kind: member.kind, name: ctx.name, interface: member.o.interfaceName, publicKey: member.publicKey },
            synced: member.o.source.synced(),
            wireguard: member.wireguard.status(),
            passes: reconciler.passes,
            lastPass: reconciler.lastResult,
            refused: member.topology?.refused ?? [],
            preview,
            ...(previewError ? { previewError } : {}),
          });
        },
        reconcile: async () => {
          log.info('full pass asked for on the control socket', { socket: path });
          const result = await reconciler.syncNow({ full: true });
          return { pass: result ? passSummary(result) : null };
        },
        diff: async () => diffAnswer(await reconciler.preview()),
      },
      { log },
    );
  }
}

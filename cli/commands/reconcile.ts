/** `aks-mesh reconcile`: ask the member on this machine for a full pass now, through its control socket (cli/control-client.ts). */
import type { Argv } from 'yargs';
import { controlOptions, runReconcile } from '../control-client.ts';
import type { ControlArgs } from '../control-client.ts';

export function reconcileCommand(y: Argv): Argv {
  return y.command<ControlArgs>(
    'reconcile',
    'Ask the agent on this machine for a full reconcile pass now (through its control socket) and show what it changed. ' +
      'Exit 0: the pass ran (or the source has not synced, so there was none to run); 1: the pass failed or the agent could not be asked (no agent, permission denied, a socket owned by another user, no answer within --timeout)',
    (c) => controlOptions(c).example('$0 reconcile', 'repair drift now instead of at the next resync'),
    (a) => runReconcile(a),
  );
}

/**
 * How `aks-mesh agent` / `gateway` start their control socket (cli/member-control.ts) when the
 * socket cannot be made, run as nobody (uid 65534) in a child process in a folder of root's that
 * nobody cannot write to, where the bind itself fails: the default socket, a diagnostic aid, is
 * given up with an error saying how to get it and the member goes on starting; a socket the operator
 * asked for with --control-socket stops the start, naming the path. Neither waits for ever.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NOBODY, folderNobodyCanEnter, nobodyUnavailable, runAsNobody } from '../sandbox/nobody.ts';

describe('the control socket at a member start, where the agent user may not create it', { skip: nobodyUnavailable() }, () => {
  let shared: string;
  let rootOnly: string;
  before(() => {
    shared = folderNobodyCanEnter('aks-mesh-member-control-');
    rootOnly = join(shared, 'root-only');
    mkdirSync(rootOnly);
    chmodSync(rootOnly, 0o755);
  });
  after(() => {
    if (shared) rmSync(shared, { recursive: true, force: true });
  });

  /** startControl as the member calls it, as nobody: what it returned or threw, and what it logged at error. */
  async function startAsNobody(args: Record<string, string>): Promise<{ started?: boolean; threw?: string; errors: Array<{ message: string; error?: string }> }> {
    const script = `const { startControl } = await import(${JSON.stringify(new URL('./member-control.ts', import.meta.url).href)});
const errors = [];
const log = { error: (message, meta) => errors.push({ message, ...meta }), warn: () => {}, info: () => {}, debug: () => {} };
// The handlers ask the member only when a request comes; none comes here.
const ctx = { member: { reconciler: {} }, log, role: 'node', name: 'node-a' };
// As in an agent, other things keep the process alive: a start that never settles shows as a hang.
const alive = setInterval(() => undefined, 1000);
try {
  const service = await startControl(${JSON.stringify(args)}, ctx, (i) => ${JSON.stringify(rootOnly)} + '/' + i + '.sock');
  await service?.close();
  process.stdout.write(JSON.stringify({ started: service !== null, errors }));
} catch (err) {
  process.stdout.write(JSON.stringify({ threw: err.message, errors }));
}
clearInterval(alive);`;
    const out = await runAsNobody(script);
    assert.notEqual(out, null, 'startControl neither returned nor threw within 20 s');
    return JSON.parse(out as string) as { started?: boolean; threw?: string; errors: Array<{ message: string; error?: string }> };
  }

  const why = (path: string): string =>
    `control socket ${path}: cannot listen: listen EACCES: permission denied ${path} (this agent, uid ${NOBODY}, may not create files in ${rootOnly}: run it as that folder's owner, or choose another --control-socket)`;

  test('the default socket: given up with an error saying how to get it; the start goes on', async () => {
    const r = await startAsNobody({ interface: 'wg7' });
    assert.deepEqual(r, {
      started: false,
      errors: [{ message: 'control socket not started: status --local, reconcile and diff will not answer (set --control-socket, or mount a writable /var/run/aks-mesh)', error: why(join(rootOnly, 'wg7.sock')) }],
    });
  });

  test('--control-socket asked for: the start fails, naming the path', async () => {
    const path = join(rootOnly, 'asked.sock');
    const r = await startAsNobody({ interface: 'wg7', 'control-socket': path });
    assert.deepEqual(r, { threw: why(path), errors: [] });
    assert.equal(existsSync(path), false);
  });
});

/**
 * The control socket's own rules (mesh/control.ts), on real Unix sockets in a temp folder, asked
 * with net-ipc's client as the CLI's sends them: owner-only modes, a stale socket of a killed
 * process replaced, a live one and anything that is not a socket refused, unknown requests and
 * failing handlers answered with a message, the file removed at close. The handlers here return
 * fixed answers: what they compute from a real member is the e2e test's (e2e/control.test.ts);
 * the answers as printed, and the client's errors, are cli/control-client.test.ts's.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from 'net-ipc';
import { ControlServer } from './control.ts';
import type { ControlHandlers, StatusAnswer } from './control.ts';

/** One request over the socket with net-ipc's client, as the CLI sends it (the CLI's own errors are cli/control-client.test.ts's). */
async function ask(path: string, op: string, version = 1): Promise<unknown> {
  const client = new Client({ path, reconnect: false });
  await client.connect();
  try {
    return await client.request({ op, version }, 5000);
  } finally {
    client.destroy();
  }
}

const fixed: ControlHandlers = {
  status: async () => ({ fixed: 'status' }) as unknown as StatusAnswer,
  reconcile: async () => ({ pass: null }),
  diff: async () => {
    throw new Error('the device cannot be read: wireguard-go is restarting');
  },
};

describe('the control socket', () => {
  let dir: string;
  const open: ControlServer[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'aks-mesh-control-test-'));
  });
  after(async () => {
    for (const s of open) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const start = async (path: string, handlers = fixed, log?: { info: (m: string) => void }): Promise<ControlServer> => {
    const l = { error: () => undefined, warn: () => undefined, debug: () => undefined, info: (m: string) => log?.info(m) };
    const s = await ControlServer.start(path, handlers, { log: l });
    open.push(s);
    return s;
  };

  test('owner-only: a missing folder is made 0700, the socket is 0600; a request is answered; close removes the file', async () => {
    const path = join(dir, 'made', 'wg0.sock');
    const s = await start(path);
    assert.equal(statSync(join(dir, 'made')).mode & 0o777, 0o700);
    assert.ok(lstatSync(path).isSocket());
    assert.equal(lstatSync(path).mode & 0o777, 0o600);
    assert.deepEqual(await ask(path, 'status'), { ok: true, result: { fixed: 'status' } });
    assert.deepEqual(await ask(path, 'reconcile'), { ok: true, result: { pass: null } });
    await s.close();
    assert.equal(existsSync(path), false);
  });

  test('a failing handler and an unknown request are answered with what went wrong', async () => {
    const path = join(dir, 'errors.sock');
    await start(path);
    assert.deepEqual(await ask(path, 'diff'), { ok: false, error: 'the device cannot be read: wireguard-go is restarting' });
    assert.deepEqual(await ask(path, 'shutdown'), { ok: false, error: 'unknown request "shutdown": expected one of status, reconcile, diff' });
    const old = (await ask(path, 'status', 0)) as { ok: boolean; error: string };
    assert.equal(old.ok, false);
    assert.match(old.error, /request version 0: this agent speaks version 1/);
  });

  test('a stale socket (its process killed) is replaced; a live one is refused and keeps answering', async () => {
    const path = join(dir, 'stale.sock');
    // A process that listens and is then killed: its socket file stays behind, with nobody on it.
    const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.stdout.write('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.ok(lstatSync(path).isSocket(), 'the killed process left its socket');
    const said: string[] = [];
    await start(path, fixed, { info: (m) => said.push(m) });
    assert.deepEqual(said, ['replaced a stale control socket (its agent is gone)']);
    assert.deepEqual(await ask(path, 'status'), { ok: true, result: { fixed: 'status' } });

    await assert.rejects(start(path), /another process is listening on it \(an agent already running for this interface\?\); stop it, or choose another --control-socket/);
    assert.deepEqual(await ask(path, 'status'), { ok: true, result: { fixed: 'status' } }, 'the first one still answers');
  });

  test('what is not a socket is never replaced; a folder others may write to is refused', async () => {
    const file = join(dir, 'notes.sock');
    writeFileSync(file, 'keep me');
    await assert.rejects(start(file), /something other than a socket is there; refusing to replace it/);
    assert.equal(readFileSync(file, 'utf8'), 'keep me');
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    await assert.rejects(start(join(shared, 'x.sock')), /is writable by other users \(mode 777\): anyone could replace the socket/);
    // Sticky (as /tmp is): others cannot remove or rename our file, so it is accepted, and its mode is left alone.
    chmodSync(shared, 0o1777);
    await start(join(shared, 'y.sock'));
    assert.equal(statSync(shared).mode & 0o7777, 0o1777);
    await assert.rejects(start('relative.sock'), /expected an absolute path/);
  });
});

/**
 * The control socket's own rules (mesh/control.ts), on real Unix sockets in a temp folder, asked
 * with net-ipc's client as the CLI's sends them: owner-only modes, a stale socket of a killed
 * process replaced, a live one and anything that is not a socket refused, a folder others may write
 * to refused (or, sticky, warned about), unknown requests and
 * failing handlers answered with a message, the file removed at close. The handlers here return
 * fixed answers: what they compute from a real member is the e2e test's (e2e/control.test.ts);
 * the answers as printed, and the client's errors, are cli/control-client.test.ts's.
 *
 * Other users are tried for real, as nobody (uid 65534) in a child process: refused by the socket's
 * own 0600 in folders they can enter, and an agent user that may not create the socket gets a
 * rejected start naming the path (not a start that never ends).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from 'net-ipc';
import { NOBODY, folderNobodyCanEnter, nobodyConnects, nobodyUnavailable, runAsNobody } from '../sandbox/nobody.ts';
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

const asNobody = nobodyUnavailable();

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
  const start = async (path: string, handlers = fixed, log?: { info?: (m: string) => void; warn?: (m: string) => void }): Promise<ControlServer> => {
    const l = { error: () => undefined, warn: (m: string) => log?.warn?.(m), debug: () => undefined, info: (m: string) => log?.info?.(m) };
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

  test('what is not a socket is never replaced; a folder others may write to is refused, a sticky one warned about', async () => {
    const file = join(dir, 'notes.sock');
    writeFileSync(file, 'keep me');
    await assert.rejects(start(file), /something other than a socket is there; refusing to replace it/);
    assert.equal(readFileSync(file, 'utf8'), 'keep me');
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    await assert.rejects(start(join(shared, 'x.sock')), /is writable by other users \(mode 777\): anyone could replace the socket/);
    // Sticky (as /tmp is): others cannot remove or rename our file, so it is accepted, and its mode is
    // left alone; but once the agent stops, another user may put a socket of their own at the path,
    // so it is warned about, naming the folder (the clients then refuse a socket of another user).
    chmodSync(shared, 0o1777);
    const warned: string[] = [];
    await start(join(shared, 'y.sock'), fixed, { warn: (m) => warned.push(m) });
    assert.equal(statSync(shared).mode & 0o7777, 0o1777);
    assert.deepEqual(warned, [
      `control socket ${join(shared, 'y.sock')}: its folder ${shared} is writable by other users (mode 1777, sticky): while this agent is not running another user may put a socket of their own at this path; prefer a folder only this agent's user may write to (such as the default /var/run/aks-mesh)`,
    ]);
    // A folder only its owner may write to: no warning.
    const quiet: string[] = [];
    await start(join(dir, 'quiet.sock'), fixed, { warn: (m) => quiet.push(m) });
    assert.deepEqual(quiet, []);
    await assert.rejects(start('relative.sock'), /expected an absolute path/);
  });

  test('a symlinked folder is judged by where it leads: a link to a folder others may write to is refused like the folder itself', async () => {
    const target = join(dir, 'open-target');
    mkdirSync(target);
    chmodSync(target, 0o777);
    const link = join(dir, 'open-link');
    symlinkSync(target, link);
    await assert.rejects(start(join(link, 'x.sock')), { message: `control socket ${join(link, 'x.sock')}: ${link} (a symlink to ${target}) is writable by other users (mode 777): anyone could replace the socket; choose another --control-socket` });
    assert.equal(existsSync(join(target, 'x.sock')), false, 'no socket was made there');
    // The usual link (/var/run -> /run): to a folder only its owner may write, accepted.
    chmodSync(target, 0o700);
    const s = await start(join(link, 'y.sock'));
    assert.deepEqual(await ask(s.path, 'status'), { ok: true, result: { fixed: 'status' } });
  });
});

describe('the control socket and other users (nobody, uid 65534, in a child process)', { skip: asNobody }, () => {
  let shared: string;
  const open: Array<ControlServer | NetServer> = [];
  before(() => {
    shared = folderNobodyCanEnter('aks-mesh-control-others-');
  });
  after(async () => {
    for (const s of open) await (s instanceof ControlServer ? s.close() : new Promise((r) => s.close(r)));
    if (shared) rmSync(shared, { recursive: true, force: true });
  });

  test('in folders nobody can enter (0711, and sticky 1777 as /tmp is), the socket refuses nobody by its own 0600', async () => {
    for (const [name, mode] of [['searchable', 0o711], ['sticky', 0o1777]] as const) {
      const folder = join(shared, name);
      mkdirSync(folder);
      chmodSync(folder, mode);
      // The control: a socket anyone may open, in the same folder, lets nobody in; so the folder is
      // no guard there, and the refusal below is the control socket's own mode.
      const anyone = join(folder, 'anyone.sock');
      const plain = createServer((c) => c.end());
      open.push(plain);
      await new Promise<void>((resolve) => plain.listen(anyone, resolve));
      chmodSync(anyone, 0o666);
      assert.equal(await nobodyConnects(anyone), 'connected', `nobody reaches a 0666 socket in the ${name} folder`);

      const socket = join(folder, 'wg0.sock');
      const s = await ControlServer.start(socket, fixed);
      open.push(s);
      assert.equal(await nobodyConnects(socket), 'EACCES', `nobody is refused the control socket in the ${name} folder`);
      assert.equal(lstatSync(socket).mode & 0o777, 0o600);
      assert.deepEqual(await ask(socket, 'status'), { ok: true, result: { fixed: 'status' } }, 'its owner is answered');
    }
  });

  test('an agent user that may not create the socket there: start() rejects naming the path and why (it used to wait for ever)', async () => {
    // Root's folder, 0755: accepted as the socket's folder (root may own it), but nobody cannot bind in it.
    const rootOnly = join(shared, 'root-only');
    mkdirSync(rootOnly);
    chmodSync(rootOnly, 0o755);
    const path = join(rootOnly, 'wg0.sock');
    const script = `const { ControlServer } = await import(${JSON.stringify(new URL('./control.ts', import.meta.url).href)});
const handlers = { status: async () => ({}), reconcile: async () => ({ pass: null }), diff: async () => ({}) };
// As in an agent, other things keep the process alive: a start() that never settles shows as a hang.
const alive = setInterval(() => undefined, 1000);
try {
  const s = await ControlServer.start(${JSON.stringify(path)}, handlers);
  process.stdout.write(JSON.stringify({ started: true }));
  await s.close();
} catch (err) {
  process.stdout.write(JSON.stringify({ error: err.message }));
}
clearInterval(alive);`;
    const out = await runAsNobody(script);
    assert.notEqual(out, null, 'ControlServer.start() neither resolved nor rejected within 20 s');
    assert.deepEqual(JSON.parse(out as string), {
      error: `control socket ${path}: cannot listen: listen EACCES: permission denied ${path} (this agent, uid ${NOBODY}, may not create files in ${rootOnly}: run it as that folder's owner, or choose another --control-socket)`,
    });
    assert.equal(existsSync(path), false);
  });
});

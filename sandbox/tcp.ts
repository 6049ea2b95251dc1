/**
 * A TCP transfer between two namespaces, checked end to end: the receiver hashes what arrives,
 * the sender hashes what it sent, and both counts and hashes must match. Both ends are small Node
 * programs run with `ip netns exec`, so no extra tool is involved.
 */
import type { Sandbox } from './sandbox.ts';

const SERVER = `
const net = require('node:net'); const crypto = require('node:crypto');
const [host, port] = process.argv.slice(1);
const srv = net.createServer((s) => { const h = crypto.createHash('sha256'); let n = 0;
  s.on('data', (d) => { n += d.length; h.update(d); });
  s.on('end', () => { s.end(JSON.stringify({ bytes: n, sha256: h.digest('hex') })); srv.close(); }); });
srv.listen(Number(port), host, () => process.stdout.write('listening\\n'));
setTimeout(() => process.exit(3), 120000).unref();
`;

const CLIENT = `
const net = require('node:net'); const crypto = require('node:crypto');
const [host, port, total] = process.argv.slice(1); const h = crypto.createHash('sha256');
const s = net.connect(Number(port), host, () => { let left = Number(total);
  const pump = () => { while (left > 0) { const c = crypto.randomBytes(Math.min(65536, left)); left -= c.length; h.update(c);
    if (!s.write(c)) return s.once('drain', pump); } s.end(); }; pump(); });
let reply = ''; s.on('data', (d) => { reply += d; });
s.on('end', () => { const r = JSON.parse(reply); process.stdout.write(JSON.stringify({ sent: Number(total), sentSha256: h.digest('hex'), received: r.bytes, receivedSha256: r.sha256 })); });
s.on('error', (e) => { process.stderr.write(e.message); process.exit(2); });
setTimeout(() => process.exit(3), 120000).unref();
`;

export interface TransferResult {
  sent: number;
  received: number;
  intact: boolean;
  seconds: number;
}

export async function tcpTransfer(
  box: Sandbox,
  from: { ns: string },
  to: { ns: string; ip: string },
  bytes: number,
  port = 5201,
): Promise<TransferResult> {
  const server = box.spawn(to.ns, process.execPath, ['-e', SERVER, to.ip, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    server.stdout?.once('data', () => resolve());
    server.once('exit', (code) => reject(new Error(`TCP server in ${to.ns} exited (${code}) before listening`)));
  });
  const started = process.hrtime.bigint();
  const { stdout } = await box.exec(from.ns, process.execPath, ['-e', CLIENT, to.ip, String(port), String(bytes)], {
    timeoutMs: 120_000,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const r = JSON.parse(stdout) as { sent: number; sentSha256: string; received: number; receivedSha256: string };
  return { sent: r.sent, received: r.received, intact: r.sent === r.received && r.sentSha256 === r.receivedSha256, seconds };
}

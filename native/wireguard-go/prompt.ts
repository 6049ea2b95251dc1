/**
 * Handshakes at once after wireguard-go restarts or its device is reset.
 *
 * Why: the peers still hold the old session and keep sending on it; the new process cannot decrypt
 * those packets and has nothing of its own to send, so without a nudge no handshake starts until
 * the peers' rekey timers fire (10 s + 5 s). Traffic that flows only towards the restarted node
 * would stop for about 15 s.
 *
 * How, without sending packets of our own: wireguard-go's UAPI (device/uapi.go, the same in
 * 0.0.20220316 and 0.0.20230223) sends a keepalive at once when a `set` turns a peer's
 * persistent_keepalive_interval from 0 to non-zero and the device is up (`pkaOn`, handled in
 * `handlePostConfig` → `SendKeepalive`); without a session, SendKeepalive (device/send.go) starts a
 * handshake initiation. So per peer with an endpoint: `update_only` (never creates or rewrites a
 * peer), keepalive off then on (peers that have one) or on with a placeholder (peers that have none,
 * then off again). A device that is not up yet sends the keepalive when it comes up (device.Up
 * sends one for every peer with a keepalive), which is why the placeholder stays until the
 * initiation has left (the peer's tx counter moves) or `waitMs` has passed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeviceState, PeerChange, PeerState, UapiClient } from '../uapi/index.ts';

/** Seconds; long enough that the persistent-keepalive timer cannot fire while it is in place. */
export const PROMPT_KEEPALIVE = 25;

export interface PromptOptions {
  /** true: every peer with an endpoint (a fresh process); false: only those that never completed a handshake on this device. */
  all: boolean;
  /** How long a placeholder keepalive may stay while waiting for the initiation to leave. */
  waitMs?: number;
  intervalMs?: number;
}

export interface PromptResult {
  /** Peers told to handshake now. */
  prompted: number;
  /** Of those, how many were seen sending (tx counter moved) within waitMs. */
  sent: number;
  /** Peers skipped because they have no endpoint (they must call us first). */
  noEndpoint: number;
}

/** Make the peers of a freshly (re)configured device start their handshakes now. */
export async function promptHandshakes(client: UapiClient, options: PromptOptions): Promise<PromptResult> {
  const device = await client.get();
  const candidates = device.peers.filter((p) => options.all || p.lastHandshake === null);
  const targets = candidates.filter((p) => p.endpoint !== null);
  const result: PromptResult = { prompted: targets.length, sent: 0, noEndpoint: candidates.length - targets.length };
  if (targets.length === 0) return result;

  const keepalive = (p: PeerState, seconds: number): PeerChange => ({ publicKey: p.publicKey, updateOnly: true, persistentKeepalive: seconds });
  const own = targets.filter((p) => p.persistentKeepalive > 0);
  const placeholder = targets.filter((p) => p.persistentKeepalive === 0);
  // Only a 0 → non-zero change sends; for peers that have a keepalive, that takes two sets.
  if (own.length > 0) await client.set({ peers: own.map((p) => keepalive(p, 0)) });
  await client.set({ peers: targets.map((p) => keepalive(p, p.persistentKeepalive || PROMPT_KEEPALIVE)) });

  const txBefore = new Map(targets.map((p) => [p.publicKey, p.txBytes]));
  const moved = (d: DeviceState): number => d.peers.filter((p) => txBefore.has(p.publicKey) && p.txBytes > (txBefore.get(p.publicKey) as bigint)).length;
  const deadline = Date.now() + (options.waitMs ?? 2000);
  let now = await client.get();
  while (moved(now) < targets.length && Date.now() < deadline) {
    await sleep(options.intervalMs ?? 20);
    now = await client.get();
  }
  result.sent = moved(now);

  // Take the placeholder away again, unless someone (the reconciler) has set another value since.
  const live = new Map(now.peers.map((p) => [p.publicKey, p]));
  const restore = placeholder.filter((p) => live.get(p.publicKey)?.persistentKeepalive === PROMPT_KEEPALIVE);
  if (restore.length > 0) await client.set({ peers: restore.map((p) => keepalive(p, 0)) });
  return result;
}

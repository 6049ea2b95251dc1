/**
 * The `ws` library (DESIGN §5: the WebSocket library made for the job), typed by hand for the few
 * members the live stream (mesh/stream.ts) and `aks-mesh inspect --url` use. ws ships no type
 * declarations and @types/ws is not a dependency: when it becomes one, these casts still compile and
 * this file may shrink to re-exports.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
// eslint-disable-next-line @typescript-eslint/ban-ts-comment -- a @ts-expect-error would break the day @types/ws is installed
// @ts-ignore: ws has no bundled declarations (see above)
import { WebSocket as WsWebSocket, WebSocketServer as WsWebSocketServer } from 'ws';

/** A connected WebSocket (either end). */
export interface WebSocketLike {
  readonly readyState: number;
  /** Bytes queued in user space and in the socket's write buffer, not yet handed to the kernel. */
  readonly bufferedAmount: number;
  send(data: string, cb?: (err?: Error) => void): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  ping(): void;
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this;
  on(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'open', listener: () => void): this;
  on(event: 'unexpected-response', listener: (req: unknown, res: IncomingMessage) => void): this;
  once(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  once(event: 'open', listener: () => void): this;
  removeAllListeners(event?: string): this;
}

export interface WebSocketClientOptions {
  headers?: Record<string, string>;
  /** Opening handshake timeout (ms). */
  handshakeTimeout?: number;
  /** Largest message accepted (bytes). */
  maxPayload?: number;
  perMessageDeflate?: boolean;
  followRedirects?: boolean;
}

export interface WebSocketServerLike {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, cb: (ws: WebSocketLike) => void): void;
  close(cb?: (err?: Error) => void): void;
}

export interface WebSocketServerOptions {
  noServer: true;
  maxPayload?: number;
  perMessageDeflate?: boolean;
  clientTracking?: boolean;
}

export const OPEN = 1;

export const WebSocket = WsWebSocket as unknown as new (url: string, options?: WebSocketClientOptions) => WebSocketLike;
export const WebSocketServer = WsWebSocketServer as unknown as new (options: WebSocketServerOptions) => WebSocketServerLike;

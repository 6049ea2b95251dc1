export type { DeviceConfig, DeviceState, PeerChange, PeerConfig, PeerState, SetRequest } from './types.ts';
export {
  blankPeerState,
  encodeSet,
  fullPeerChange,
  locateRefusedLine,
  parseGet,
  parseGetBytes,
  renderGet,
  renderSet,
  replaceDeviceRequest,
} from './codec.ts';
export type { RefusedLine } from './codec.ts';
export { UAPI_ERRNO, errnoName } from './errno.ts';
export { DEFAULT_MAX_REPLY_BYTES, DEFAULT_SOCKET_DIR, DEFAULT_TIMEOUT_MS, UapiClient, UapiSetError, socketPathFor } from './client.ts';
export type { UapiClientOptions, UapiObserver } from './client.ts';

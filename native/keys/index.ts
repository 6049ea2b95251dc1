export {
  KEY_BYTES,
  KEY_FILE_MAX_BYTES,
  KEY_PATTERN,
  clamp,
  decodeKey,
  generatePresharedKey,
  generatePrivateKey,
  hexToKey,
  isZeroHex,
  keyProblem,
  keyToHex,
  loadOrCreatePrivateKey,
  publicKeyOf,
  readPrivateKeyFile,
  writePrivateKeyFile,
} from './keys.ts';
export type { KeyOptions } from './keys.ts';
export { REDACTED, redactSecrets, redactUapiLine, registerSecret } from './redact.ts';

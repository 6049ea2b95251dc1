/**
 * The errno values wireguard-go answers with (`errno=-22`), their names, and what each means for
 * the line that was refused. See wireguard-go's ipc package: IpcErrorIO, IpcErrorProtocol,
 * IpcErrorInvalid, IpcErrorPortInUse, IpcErrorUnknown.
 */
export const UAPI_ERRNO: Readonly<Record<number, { name: string; meaning: string }>> = {
  5: { name: 'EIO', meaning: 'wireguard-go could not read the request or write its answer' },
  22: { name: 'EINVAL', meaning: 'a value or key that wireguard-go could not parse' },
  55: { name: 'ENOANO', meaning: 'an unclassified wireguard-go error' },
  71: { name: 'EPROTO', meaning: 'a line that is not key=value' },
  98: { name: 'EADDRINUSE', meaning: 'the listen port (or fwmark) could not be bound' },
};

export function errnoName(errno: number): string {
  return UAPI_ERRNO[Math.abs(errno)]?.name ?? `errno ${Math.abs(errno)}`;
}

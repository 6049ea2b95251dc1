/** The member's live WebSocket stream (issue 12): flags and start. Placeholder until built. */
import type { Argv } from 'yargs';
import type { MemberService, ServiceContext } from './member-services.ts';

export const STREAM_FLAG_NAMES: readonly string[] = [];
export type StreamArgs = Record<string, unknown>;

export function streamFlags<T>(y: Argv<T>): Argv<T> {
  return y;
}

export async function startStream(_a: StreamArgs, _ctx: ServiceContext): Promise<MemberService | null> {
  return null;
}

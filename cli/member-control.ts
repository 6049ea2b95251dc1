/** The member's local control socket (net-ipc) (issue 12): flags and start. Placeholder until built. */
import type { Argv } from 'yargs';
import type { MemberService, ServiceContext } from './member-services.ts';

export const CONTROL_FLAG_NAMES: readonly string[] = [];
export type ControlArgs = Record<string, unknown>;

export function controlFlags<T>(y: Argv<T>): Argv<T> {
  return y;
}

export async function startControl(_a: ControlArgs, _ctx: ServiceContext): Promise<MemberService | null> {
  return null;
}

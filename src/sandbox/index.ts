/**
 * The embedded Bitrix24 sandbox: an in-memory portal emulator that serves the REST methods our nodes use,
 * OAuth, batch, the rate limit and ONOFFLINEEVENT pushes, with fault injection for reliability tests.
 * See README.md beside this file for every behaviour and the choices made where the docs are silent.
 */

import { handleControl } from "./control/control-api";
import type { Sandbox, SandboxOptions } from "./sandbox-types";
import { SandboxPortal } from "./server/portal";

export type { CrmStore, SeedCounts } from "./crm/crm-store";
export type { InstallResult, InstallShape } from "./oauth/app-install";
export type * from "./sandbox-types";

/** Starts a sandbox; its control API (`/_sandbox/*`) is wired in here, where both sides are known. */
export function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  return SandboxPortal.start(options, handleControl);
}

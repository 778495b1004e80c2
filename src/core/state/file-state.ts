import { promises as fs, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { validatePortalUrl } from "../rest/portal-url";
import { type FileInstanceRegistry, fileInstanceRegistry } from "./file-instance-registry";
import { FileJournalStore } from "./process-journal";
import type { InstalledApplication, StateStores } from "./state-seam";
import { FileTokenStore, parseStoredTokens, tokenStoreKey } from "./token-store";

/**
 * The state seam on this machine (DESIGN.md, "Scale-out"): files in `<userDir>/.bitrix24-offline-events/`, 0600,
 * written atomically; several Node-RED instances on one machine share the folder. This is what a portal node
 * without a `store` uses, exactly as before the seam existed.
 */

/** The installation kept in `store`'s file for `key`, read synchronously (at node start, before any call). */
export function storedInstallation(store: FileTokenStore, key: string): InstalledApplication | undefined {
  try {
    return parseStoredTokens(readFileSync(store.fileFor(key), "utf8"))?.installation;
  } catch {
    return undefined;
  }
}

/**
 * A portal node deployed without a portal URL takes the first verified installation's portal; this file keeps
 * which one across restarts (not a secret: the portal's origin), named by the client id.
 */
function adoptedPortalFile(dir: string, clientId: string): string {
  return join(dir, `${tokenStoreKey("", clientId)}.portal.json`);
}

export async function rememberAdoptedPortal(dir: string, clientId: string, portalUrl: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.writeFile(adoptedPortalFile(dir, clientId), JSON.stringify({ portalUrl }), { mode: 0o600 });
}

export function adoptedPortal(dir: string, clientId: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(adoptedPortalFile(dir, clientId), "utf8"));
    const url =
      typeof parsed === "object" && parsed !== null ? (parsed as { portalUrl?: unknown }).portalUrl : undefined;
    return typeof url === "string" ? validatePortalUrl(url) : undefined;
  } catch {
    return undefined;
  }
}

export class FileStateStores implements StateStores {
  readonly kind = "files" as const;
  readonly tokens: FileTokenStore;
  readonly journals: FileJournalStore;
  readonly instances: FileInstanceRegistry;

  constructor(readonly dir: string) {
    this.tokens = new FileTokenStore(dir);
    this.journals = new FileJournalStore(dir);
    this.instances = fileInstanceRegistry(dir);
  }

  get where(): string {
    return this.dir;
  }

  peekInstallation(key: string): InstalledApplication | undefined {
    return storedInstallation(this.tokens, key);
  }

  async loadInstallation(key: string): Promise<InstalledApplication | undefined> {
    return (await this.tokens.load(key).catch(() => undefined))?.installation;
  }

  adoptedPortal(clientId: string): string | undefined {
    return adoptedPortal(this.dir, clientId);
  }

  rememberAdoptedPortal(clientId: string, portalUrl: string): Promise<void> {
    return rememberAdoptedPortal(this.dir, clientId, portalUrl);
  }
}

const byDir = new Map<string, FileStateStores>();

/** The file stores of a state folder: one per folder in this process, so every node shares its locks and journals. */
export function fileStateStores(dir: string): FileStateStores {
  const key = resolve(dir);
  let stores = byDir.get(key);
  if (!stores) {
    stores = new FileStateStores(key);
    byDir.set(key, stores);
  }
  return stores;
}

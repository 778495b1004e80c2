import { createHash, randomBytes } from "node:crypto";
import { promises as fs, constants as fsConstants } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { Bitrix24Error } from "../rest/errors";
import { sleep } from "../transport/backoff";
import type { InstalledApplication, StoredTokens, TokenStore } from "./state-seam";

// The types live in the seam (state-seam.ts); re-exported here for the importers that predate it.
export type { InstalledApplication, StoredTokens, TokenSet, TokenStore } from "./state-seam";

export interface FileTokenStoreOptions {
  /** A lock whose holder stopped refreshing it for this long is taken over (default 30 s). */
  staleLockMs?: number;
  /** Give up waiting for the lock after this long (default 60 s). */
  lockTimeoutMs?: number;
  /** How often a waiter looks at a lock held by another process (default 25 ms). */
  pollMs?: number;
}

/** sha256 hex of a refresh token: what the file keeps instead of comparing secrets directly. */
export function fingerprint(refreshToken: string | undefined): string {
  return createHash("sha256")
    .update(refreshToken ?? "")
    .digest("hex");
}

/** A file-name-safe key: readable portal host plus a hash that keeps different hosts/clients apart. */
export function tokenStoreKey(portalHost: string, clientId: string): string {
  const readable = portalHost.toLowerCase().replace(/[^a-z0-9.-]+/g, "_") || "portal";
  const digest = createHash("sha256").update(`${portalHost}\n${clientId}`).digest("hex").slice(0, 16);
  return `${readable}-${digest}`;
}

function storeError(description: string, cause?: unknown, retryable = false): Bitrix24Error {
  return new Bitrix24Error({ code: "TOKEN_STORE_ERROR", description, retryable }, { cause });
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}

function isStoredTokens(value: unknown): value is StoredTokens {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.accessToken === "string" &&
    typeof v.refreshToken === "string" &&
    typeof v.expiresAt === "number" &&
    typeof v.deployedFingerprint === "string" &&
    // Optional: files written before these fields existed must still load.
    (v.serverEndpoint === undefined || typeof v.serverEndpoint === "string") &&
    (v.clientEndpoint === undefined || typeof v.clientEndpoint === "string")
  );
}

function isInstalledApplication(value: unknown): value is InstalledApplication {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    ["applicationToken", "memberId", "domain", "clientEndpoint", "serverEndpoint"].every(
      (field) => typeof v[field] === "string",
    ) && typeof v.installedAt === "number"
  );
}

/**
 * A token file's text as StoredTokens, or undefined when it is not one. Only an atomic replace ever writes the
 * file, so garbage means someone else wrote it: the deployed credentials are a better bet than refusing to start.
 */
export function parseStoredTokens(text: string): StoredTokens | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isStoredTokens(parsed)) return undefined;
  // A damaged installation block is dropped, not the tokens: they still work without it.
  if (parsed.installation !== undefined && !isInstalledApplication(parsed.installation)) delete parsed.installation;
  return parsed;
}

// One queue per lock file in this process, shared by every FileTokenStore instance pointing at it, so clients
// in one process hand the lock over directly instead of polling the lock file.
const inProcessTails = new Map<string, Promise<void>>();

interface LockOwner {
  pid: number;
  host: string;
  token: string;
}

/**
 * One JSON file per key (mode 0600) in a directory of the caller's choosing. Writes are atomic (temp file,
 * fsync, rename, fsync of the directory), so a crash leaves the old or the new tokens, never half of them.
 * The lock is a lock file created with O_EXCL, which works across processes on one host and on shared
 * volumes; its holder touches it while working, and a lock left by a dead holder is taken over once stale.
 */
export class FileTokenStore implements TokenStore {
  readonly dir: string;
  private readonly staleLockMs: number;
  private readonly lockTimeoutMs: number;
  private readonly pollMs: number;

  constructor(dir: string, options: FileTokenStoreOptions = {}) {
    this.dir = resolve(dir);
    this.staleLockMs = options.staleLockMs ?? 30000;
    this.lockTimeoutMs = options.lockTimeoutMs ?? 60000;
    this.pollMs = options.pollMs ?? 25;
  }

  fileFor(key: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(key) || key.startsWith(".")) {
      throw storeError(`token store key "${key}" is not a safe file name (use tokenStoreKey())`);
    }
    return join(this.dir, `${key}.tokens.json`);
  }

  async load(key: string): Promise<StoredTokens | undefined> {
    const file = this.fileFor(key);
    let text: string;
    try {
      text = await fs.readFile(file, "utf8");
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return undefined;
      throw storeError(`cannot read ${file}: ${(err as Error).message}`, err, true);
    }
    return parseStoredTokens(text);
  }

  /**
   * Callers hold the key's lock. A save without `installation` keeps the file's: the installation outlives token
   * rotations and re-authorisations, and only a new installation replaces it.
   */
  async save(key: string, t: StoredTokens): Promise<void> {
    const file = this.fileFor(key);
    const tmp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
    const installation = t.installation ?? (await this.load(key).catch(() => undefined))?.installation;
    const body = JSON.stringify(
      {
        accessToken: t.accessToken,
        refreshToken: t.refreshToken,
        expiresAt: t.expiresAt,
        deployedFingerprint: t.deployedFingerprint,
        updatedAt: t.updatedAt,
        serverEndpoint: t.serverEndpoint,
        clientEndpoint: t.clientEndpoint,
        ...(installation ? { installation } : {}),
      },
      null,
      2,
    );
    try {
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      const handle = await fs.open(tmp, "wx", 0o600);
      try {
        await handle.writeFile(body, "utf8");
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true }).catch(() => undefined);
      throw storeError(`cannot write ${file}: ${(err as Error).message}`, err, true);
    }
    await this.syncDir();
  }

  async withLock<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const lockFile = `${this.fileFor(key)}.lock`;
    const previous = inProcessTails.get(lockFile) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => {
      release = r;
    });
    const tail = previous.then(() => mine);
    inProcessTails.set(lockFile, tail);
    try {
      await previous;
      const owner = await this.acquireFile(lockFile, signal);
      const heartbeat = setInterval(
        () => {
          const now = new Date();
          fs.utimes(lockFile, now, now).catch(() => undefined);
        },
        Math.max(10, Math.floor(this.staleLockMs / 3)),
      );
      try {
        return await fn();
      } finally {
        clearInterval(heartbeat);
        await this.releaseFile(lockFile, owner);
      }
    } finally {
      release();
      if (inProcessTails.get(lockFile) === tail) inProcessTails.delete(lockFile);
    }
  }

  private async acquireFile(lockFile: string, signal?: AbortSignal): Promise<LockOwner> {
    const owner: LockOwner = { pid: process.pid, host: hostname(), token: randomBytes(12).toString("hex") };
    const deadline = Date.now() + this.lockTimeoutMs;
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
      throw storeError(`cannot create ${this.dir}: ${(err as Error).message}`, err);
    });
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      try {
        const handle = await fs.open(lockFile, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o600);
        try {
          await handle.writeFile(JSON.stringify(owner));
        } finally {
          await handle.close();
        }
        return owner;
      } catch (err) {
        if (errnoCode(err) !== "EEXIST") {
          throw storeError(`cannot create lock ${lockFile}: ${(err as Error).message}`, err);
        }
      }
      if (await this.breakIfStale(lockFile)) continue;
      if (Date.now() >= deadline) {
        throw storeError(
          `the token file is locked by another process for more than ${this.lockTimeoutMs} ms (${lockFile})`,
          undefined,
          true,
        );
      }
      await sleep(this.pollMs, signal);
    }
  }

  /** Removes a lock whose holder is gone: dead pid on this host, or no heartbeat for staleLockMs. */
  private async breakIfStale(lockFile: string): Promise<boolean> {
    let stale = false;
    try {
      const stat = await fs.stat(lockFile);
      stale = Date.now() - stat.mtimeMs > this.staleLockMs;
      if (!stale) {
        const holder = JSON.parse(await fs.readFile(lockFile, "utf8")) as Partial<LockOwner>;
        stale = holder.host === hostname() && typeof holder.pid === "number" && !processAlive(holder.pid);
      }
    } catch (err) {
      // Gone already (released between open and stat): just try again. Half-written by its creator: not stale.
      return errnoCode(err) === "ENOENT";
    }
    if (!stale) return false;
    await fs.rm(lockFile, { force: true });
    return true;
  }

  private async releaseFile(lockFile: string, owner: LockOwner): Promise<void> {
    try {
      const holder = JSON.parse(await fs.readFile(lockFile, "utf8")) as Partial<LockOwner>;
      // Only remove our own lock: if ours was broken as stale, the file now belongs to someone else.
      if (holder.token === owner.token) await fs.rm(lockFile, { force: true });
    } catch {
      // Already gone.
    }
  }

  private async syncDir(): Promise<void> {
    // Makes the rename itself durable; not every filesystem lets a directory be opened, which is fine.
    try {
      const handle = await fs.open(this.dir, "r");
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch {
      // best effort
    }
  }
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === "EPERM";
  }
}

import { promises as fs, unlinkSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import {
  AnnouncedQueues,
  type InstanceRegistry,
  type LiveInstance,
  newInstanceId,
  type QueueKey,
  queueKeyDigest,
} from "./instance-registry";

/**
 * The instance registry of one machine: a file per live Node-RED process in `<stateDir>/instances/`, rewritten every
 * heartbeat with the queues it drains. Several Node-RED instances on one machine share the state folder, so they
 * see each other here.
 *
 * Alive means: the entry was renewed within `staleMs`, and — for an entry written on this host — its pid still runs
 * and is not ours under another id (a container restarts Node-RED under the same pid). A SIGKILLed or crashed
 * instance is therefore dead at once for its neighbours; `staleMs` only matters when its pid was taken by another
 * process meanwhile, or for a frozen process (a stop of longer than `staleMs` is taken for a death: the worst that
 * follows is a redelivery, never a loss).
 *
 * Entries are replaced atomically (temp file + rename) and not fsync'd: after a power loss every instance of the
 * machine is dead anyway, and their entries are stale.
 */

export interface FileRegistryOptions {
  heartbeatMs?: number;
  staleMs?: number;
}

interface Entry {
  instanceId: string;
  pid: number;
  host: string;
  startedAt: number;
  renewedAt: number;
  queues: string[];
}

const HOST = hostname();
/** One Node-RED process is one instance, whatever state folders its portals use. */
const PROCESS_INSTANCE_ID = newInstanceId();

export function processInstanceId(): string {
  return PROCESS_INSTANCE_ID;
}

function pidRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // runs, under another user
  }
}

function isEntry(value: unknown): value is Entry {
  const e = value as Entry;
  return (
    typeof e === "object" &&
    e !== null &&
    typeof e.instanceId === "string" &&
    Number.isSafeInteger(e.pid) &&
    typeof e.host === "string" &&
    Number.isFinite(e.renewedAt) &&
    Array.isArray(e.queues)
  );
}

export class FileInstanceRegistry implements InstanceRegistry {
  readonly instanceId: string;
  readonly heartbeatMs: number;
  readonly deathNoticeMs: number;
  private readonly staleMs: number;
  private readonly dir: string;
  private readonly file: string;
  /** Queue digest → how many consumers of this process announced it. */
  private readonly queues = new AnnouncedQueues();
  private readonly startedAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(stateDir: string, options: FileRegistryOptions & { instanceId?: string } = {}) {
    this.instanceId = options.instanceId ?? PROCESS_INSTANCE_ID;
    this.heartbeatMs = options.heartbeatMs ?? 2000;
    this.staleMs = options.staleMs ?? 30_000;
    this.deathNoticeMs = this.staleMs;
    this.dir = join(stateDir, "instances");
    this.file = join(this.dir, `${this.instanceId}.json`);
  }

  async announce(queue: QueueKey): Promise<void> {
    this.queues.add(queue);
    if (!this.timer) {
      this.timer = setInterval(() => {
        this.renew().catch(() => undefined); // the next beat tries again; a neighbour sees us stale only after staleMs
      }, this.heartbeatMs);
      this.timer.unref();
      process.once("exit", this.leave);
    }
    await this.renew();
  }

  renew(): Promise<void> {
    // Serialised: two renewals racing on the temp file would leave either one, but never a torn entry.
    this.writing = this.writing.catch(() => undefined).then(() => this.write());
    return this.writing;
  }

  async withdraw(queue: QueueKey): Promise<void> {
    this.queues.remove(queue);
    if (!this.timer) return;
    // The entry stays, renewed once more: a redeploy closes every consumer, and its journals must not look
    // abandoned to the neighbours meanwhile (they would take its batches). With no queue left renewal stops, so
    // an instance that drains nothing for staleMs looks gone and what its removed nodes held is taken over.
    await this.renew();
    if (this.queues.size === 0) this.stopRenewing();
  }

  private stopRenewing(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    process.off("exit", this.leave);
  }

  async liveOthers(queue: QueueKey): Promise<LiveInstance[]> {
    const digest = queueKeyDigest(queue);
    const entries = await this.entries();
    return entries
      .filter((e) => e.instanceId !== this.instanceId && e.queues.includes(digest) && this.alive(e))
      .map((e) => ({ instanceId: e.instanceId, renewedAt: e.renewedAt }));
  }

  async isLive(instanceId: string): Promise<boolean> {
    if (instanceId === this.instanceId) return true;
    if (!/^[A-Za-z0-9_-]+$/.test(instanceId)) return false;
    try {
      const entry: unknown = JSON.parse(await fs.readFile(join(this.dir, `${instanceId}.json`), "utf8"));
      return isEntry(entry) && this.alive(entry);
    } catch {
      return false; // no entry (never announced, or gone) or a torn one: nobody renews it
    }
  }

  /** Stops renewing and removes the entry (tests; a process that exits removes it on its own). */
  async close(): Promise<void> {
    this.stopRenewing();
    await this.writing.catch(() => undefined);
    await fs.rm(this.file, { force: true });
  }

  private alive(e: Entry): boolean {
    if (e.instanceId === this.instanceId) return true;
    if (Date.now() - e.renewedAt > this.staleMs) return false;
    if (e.host !== HOST) return true;
    return e.pid !== process.pid && pidRuns(e.pid);
  }

  private async entries(): Promise<Entry[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch {
      return [];
    }
    const out: Entry[] = [];
    for (const name of names) {
      if (!name.endsWith(".json")) continue;
      try {
        const entry: unknown = JSON.parse(await fs.readFile(join(this.dir, name), "utf8"));
        if (isEntry(entry)) out.push(entry);
      } catch {
        // removed or replaced meanwhile
      }
    }
    return out;
  }

  private async write(): Promise<void> {
    const entry: Entry = {
      instanceId: this.instanceId,
      pid: process.pid,
      host: HOST,
      startedAt: this.startedAt,
      renewedAt: Date.now(),
      queues: this.queues.digests(),
    };
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.tmp`;
    await fs.writeFile(tmp, JSON.stringify(entry), { mode: 0o600 });
    await fs.rename(tmp, this.file);
  }

  /** On exit: synchronous, best effort (neighbours see a dead pid anyway). */
  private readonly leave = (): void => {
    try {
      unlinkSync(this.file);
    } catch {
      // already gone
    }
  };
}

const registries = new Map<string, FileInstanceRegistry>();

/** The process's registry in a state folder (one per folder, shared by every consumer using it). */
export function fileInstanceRegistry(stateDir: string): FileInstanceRegistry {
  let registry = registries.get(stateDir);
  if (!registry) {
    registry = new FileInstanceRegistry(stateDir);
    registries.set(stateDir, registry);
  }
  return registry;
}

import { createHash, randomBytes } from "node:crypto";

/**
 * Who is alive among the consumers of a queue (DESIGN.md, "Scale-out", point 3). Records held under a process id
 * nobody remembers (a crash between the portal's answer and the journal write) may be taken over at once only when
 * no other LIVE consumer of the same queue can own them; a dead instance's journal may be taken over at once too.
 * Deciding that needs to know who is alive: live consumers announce the queues they drain and renew that while
 * they run; a dead one stops renewing.
 *
 * A queue is portal host + client id + auth_connector + error flag (the journal's key, `queueKeyOf`). Two
 * implementations sit behind this interface: files in the state folder for instances on one machine
 * (file-instance-registry.ts), and PostgreSQL leases for several machines (the shared-state store).
 */

export interface QueueKey {
  portalHost: string;
  clientId: string;
  authConnector: string;
  error: 0 | 1;
}

/** The string that names a queue (also the journal's key string). */
export function queueKeyString(key: QueueKey): string {
  return [key.portalHost.toLowerCase(), key.clientId, key.authConnector, String(key.error)].join("\n");
}

/** A short, stable digest of a queue key: what a registry entry lists (no connector or client id in clear). */
export function queueKeyDigest(key: QueueKey): string {
  return createHash("sha256").update(queueKeyString(key)).digest("hex").slice(0, 16);
}

/**
 * The queues this process announces, each with how many of its consumers drain it (two get nodes may drain one
 * queue): a queue stays announced until the last of them withdraws. Kept by every registry implementation.
 */
export class AnnouncedQueues {
  private readonly counts = new Map<string, number>();

  add(queue: QueueKey): void {
    const digest = queueKeyDigest(queue);
    this.counts.set(digest, (this.counts.get(digest) ?? 0) + 1);
  }

  remove(queue: QueueKey): void {
    const digest = queueKeyDigest(queue);
    const n = (this.counts.get(digest) ?? 0) - 1;
    if (n > 0) this.counts.set(digest, n);
    else this.counts.delete(digest);
  }

  get size(): number {
    return this.counts.size;
  }

  /** What an entry of this process lists. */
  digests(): string[] {
    return [...this.counts.keys()];
  }
}

export interface LiveInstance {
  instanceId: string;
  /** Epoch ms of its last renewal. */
  renewedAt: number;
}

export interface InstanceRegistry {
  /** This process's id: unique per run (a restarted Node-RED is a new instance, its old self a dead one). */
  readonly instanceId: string;
  /**
   * How often an instance renews; a consumer looks at the registry as often, so a death is seen within about
   * one period (plus the implementation's own detection delay, `deathNoticeMs`).
   */
  readonly heartbeatMs: number;
  /** Longest time from a death to liveOthers() no longer listing the dead instance. */
  readonly deathNoticeMs: number;
  /** This instance drains `queue` (from now on, until withdraw). Renewal starts with the first queue. */
  announce(queue: QueueKey): Promise<void>;
  /** Proves this instance is still alive. Implementations renew on their own timer too. */
  renew(): Promise<void>;
  /** This instance no longer drains `queue`; with no queue left it leaves the registry. */
  withdraw(queue: QueueKey): Promise<void>;
  /** The other live instances that announced `queue`. */
  liveOthers(queue: QueueKey): Promise<LiveInstance[]>;
  /** Whether `instanceId` (another instance, or this one) is alive, whatever it drains. */
  isLive(instanceId: string): Promise<boolean>;
}

/** A fresh instance id: file-name safe, unique per run even when a container restarts Node-RED under the same pid. */
export function newInstanceId(): string {
  return `${process.pid}-${randomBytes(5).toString("hex")}`;
}

import { hostname } from "node:os";
import { processInstanceId } from "../file-instance-registry";
import {
  AnnouncedQueues,
  type InstanceRegistry,
  type LiveInstance,
  type QueueKey,
  queueKeyDigest,
} from "../instance-registry";
import type { PgDatabase } from "./pg-database";

/**
 * Who is alive among a queue's consumers, for several machines (DESIGN.md, "Scale-out" (3)): one row per Node-RED
 * process with a lease it renews every lease/3. The same renewal extends the leases of every process id the
 * instance holds (pg-journal-store.ts), so an instance is alive, and its process ids are its own, exactly while it
 * renews. A dead instance (SIGKILL, power, a machine cut off) stops renewing: after `leaseMs` the others see it
 * dead and take over what it held. The clock is the database's: the machines need not agree on the time.
 *
 * A frozen instance that comes back after its lease ran out may find its process ids taken: the worst that follows
 * is a redelivery, never a loss (its saves only write rows it still holds).
 */
export class PgInstanceRegistry implements InstanceRegistry {
  readonly instanceId: string;
  readonly heartbeatMs: number;
  readonly deathNoticeMs: number;
  private readonly queues = new AnnouncedQueues();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: PgDatabase,
    readonly leaseMs: number,
    instanceId = processInstanceId(),
  ) {
    this.instanceId = instanceId;
    this.heartbeatMs = Math.max(100, Math.floor(leaseMs / 3));
    this.deathNoticeMs = leaseMs;
  }

  async announce(queue: QueueKey): Promise<void> {
    this.queues.add(queue);
    this.startRenewing();
    await this.renew();
  }

  /** Renewing starts with the first queue, or with the first process id held (a journal save). */
  startRenewing(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      // The database may be away: the lease lasts leaseMs, the next beat tries again.
      this.renew().catch(() => undefined);
    }, this.heartbeatMs);
    this.timer.unref();
  }

  renew(): Promise<void> {
    this.writing = this.writing.catch(() => undefined).then(() => this.write());
    return this.writing;
  }

  async withdraw(queue: QueueKey): Promise<void> {
    this.queues.remove(queue);
    // Renewed once more and kept renewing: a redeploy closes every consumer, and what they held must not look
    // abandoned to the neighbours meanwhile. The process ids a closed consumer released are free anyway.
    await this.renew().catch(() => undefined);
  }

  async liveOthers(queue: QueueKey): Promise<LiveInstance[]> {
    const result = await this.db.query<{ instance_id: string; renewed: string }>(
      `SELECT instance_id, (extract(epoch from renewed_at) * 1000)::bigint AS renewed FROM ${this.db.table("instances")}
       WHERE $1 = ANY(queues) AND lease_until >= now() AND instance_id <> $2`,
      [queueKeyDigest(queue), this.instanceId],
    );
    return result.rows.map((r) => ({ instanceId: r.instance_id, renewedAt: Number(r.renewed) }));
  }

  async isLive(instanceId: string): Promise<boolean> {
    if (instanceId === this.instanceId) return true;
    const result = await this.db.query(
      `SELECT 1 FROM ${this.db.table("instances")} WHERE instance_id = $1 AND lease_until >= now()`,
      [instanceId],
    );
    return (result.rowCount ?? 0) > 0;
  }

  /** Stops renewing: the instance looks dead to the others once its lease ran out (tests play a death with it). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async write(): Promise<void> {
    const lease = `now() + $4 * interval '1 millisecond'`;
    await this.db.query(
      `INSERT INTO ${this.db.table("instances")} (instance_id, host, pid, renewed_at, lease_until, queues)
       VALUES ($1, $2, $3, now(), ${lease}, $5)
       ON CONFLICT (instance_id) DO UPDATE SET renewed_at = now(), lease_until = ${lease}, queues = $5`,
      [this.instanceId, hostname(), process.pid, this.leaseMs, this.queues.digests()],
    );
    await this.db.query(
      `UPDATE ${this.db.table("processes")} SET lease_until = now() + $2 * interval '1 millisecond'
       WHERE instance_id = $1 AND holder IS NOT NULL`,
      [this.instanceId, this.leaseMs],
    );
  }
}

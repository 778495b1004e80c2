import { type BucketSettings, LeakyBucket, type RateGate } from "../../transport/rate-limiter";
import type { PgDatabase } from "./pg-database";

/**
 * The portal's bucket shared by every instance behind one address (DESIGN.md, "Scale-out" (2)): one row per portal
 * host + client id holding the level and when it was last set, drained by the DATABASE's clock (instances on
 * several machines need not agree on the time). Taking a slot is one UPDATE that only succeeds while the drained
 * level + 1 stays within burst - 1 (the same headroom as LeakyBucket, rate-limiter.ts); the row lock makes
 * concurrent takes from all instances serialise, so together they send at most burst - 1 + perSecond × t over any
 * t seconds. Waiters of this process queue first come, first served, and one of them at a time asks the database.
 *
 * When the database cannot be asked, requests go through a bucket in this process at the same settings: a
 * request still leaves (the portal answers a 503 at worst, which is retried), the drain does not stop.
 */

interface Waiter {
  resolve: (waitedMs: number) => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
  since: number;
}

const HEADROOM = 1;

export class PgBucket implements RateGate {
  private readonly capacity: number;
  private readonly queue: Waiter[] = [];
  private pumping = false;
  /** Level as the database last said, and when (this process's clock): for wouldWait. */
  private lastLevel = 0;
  private lastAt = 0;
  private readonly fallback: LeakyBucket;
  private created: Promise<void> | undefined;

  constructor(
    private readonly db: PgDatabase,
    private readonly key: string,
    private readonly o: BucketSettings,
  ) {
    const burst = Math.floor(o.burst);
    this.capacity = burst > HEADROOM ? burst - HEADROOM : burst;
    this.fallback = new LeakyBucket(o);
  }

  get settings(): BucketSettings {
    return { perSecond: this.o.perSecond, burst: Math.floor(this.o.burst) };
  }

  /** The level the database last answered, drained since by the time passed. */
  get fill(): number {
    return Math.max(0, this.lastLevel - ((Date.now() - this.lastAt) / 1000) * this.o.perSecond);
  }

  get waiting(): number {
    return this.queue.length;
  }

  wouldWait(): number {
    const level = Math.max(0, this.lastLevel - ((Date.now() - this.lastAt) / 1000) * this.o.perSecond);
    const excess = level + this.queue.length + 1 - this.capacity;
    return excess > 0 ? Math.ceil((excess / this.o.perSecond) * 1000) : 0;
  }

  acquire(signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<number>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal, since: Date.now() };
      if (signal) {
        waiter.onAbort = () => {
          const i = this.queue.indexOf(waiter);
          if (i >= 0) this.queue.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.queue.push(waiter);
      void this.pump();
    });
  }

  penalize(): void {
    this.fallback.penalize();
    this.lastLevel = this.o.burst;
    this.lastAt = Date.now();
    this.db
      .queryOnce(
        `UPDATE ${this.db.table("buckets")} SET level = GREATEST(level, $2), updated_at = clock_timestamp() WHERE key = $1`,
        [this.key, this.o.burst],
      )
      .catch(() => undefined);
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const head = this.queue[0];
        let waitMs: number;
        try {
          waitMs = await this.take();
        } catch {
          // The database is away: this process's own bucket decides for now.
          waitMs = this.fallback.wouldWait();
          if (waitMs === 0) await this.fallback.acquire().catch(() => undefined);
        }
        if (this.queue[0] !== head) continue; // aborted meanwhile: the slot (if taken) is lost, as with a real request
        if (waitMs === 0) {
          this.queue.shift();
          if (head.signal && head.onAbort) head.signal.removeEventListener("abort", head.onAbort);
          head.resolve(Date.now() - head.since);
          continue;
        }
        await new Promise((r) => setTimeout(r, Math.max(5, waitMs)));
      }
    } finally {
      this.pumping = false;
    }
  }

  /** One slot from the shared row: 0 when taken, else how long to wait before asking again. */
  private async take(): Promise<number> {
    const table = this.db.table("buckets");
    this.created ??= this.db
      .queryOnce(
        `INSERT INTO ${table} (key, level, updated_at) VALUES ($1, 0, clock_timestamp()) ON CONFLICT DO NOTHING`,
        [this.key],
      )
      .then(
        () => undefined,
        (err: unknown) => {
          this.created = undefined;
          throw err;
        },
      );
    await this.created;
    // The row is locked from the read to the write, so takes of all instances serialise on it.
    const result = await this.db.queryOnce<{ taken: boolean; level: number }>(
      `WITH current AS (
         SELECT GREATEST(0, level - EXTRACT(EPOCH FROM clock_timestamp() - updated_at) * $2)::float8 AS level
         FROM ${table} WHERE key = $1 FOR UPDATE
       ), taken AS (
         UPDATE ${table} b SET level = current.level + 1, updated_at = clock_timestamp() FROM current
         WHERE b.key = $1 AND current.level + 1 <= $3 RETURNING 1
       )
       SELECT current.level, EXISTS (SELECT 1 FROM taken) AS taken FROM current`,
      [this.key, this.o.perSecond, this.capacity],
    );
    const row = result.rows[0];
    const level = Number(row?.level ?? 0);
    this.lastAt = Date.now();
    if (row?.taken) {
      this.lastLevel = level + 1;
      return 0;
    }
    this.lastLevel = level;
    return Math.ceil(((level + 1 - this.capacity) / this.o.perSecond) * 1000);
  }
}

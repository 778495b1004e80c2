import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { journalKeyString } from "../process-journal";
import type {
  JournalKey,
  JournalLoadWarning,
  JournalProcess,
  JournalRecord,
  JournalSession,
  JournalStore,
} from "../state-seam";
import type { PgDatabase } from "./pg-database";

/**
 * Held process ids in PostgreSQL (DESIGN.md, "Scale-out" (3)): one row per process id, with the consumer that
 * holds it and a lease. A live instance renews its leases every lease/3; a dead one stops, and once its lease has
 * run out any live consumer of the same queue takes the rows over (`watch` tells it) and re-selects them, with
 * their delivery counts. A row under a lease that has not run out is never taken: a live instance's process ids
 * stay its own.
 *
 * The bound: a dead instance's held events are re-selected by a live one within lease + lease/3 (its watch tick)
 * + one re-select request.
 */

export const DEFAULT_LEASE_MS = 15_000;

/** One Node-RED process is one instance: a restarted one is a new instance, its former self a dead one. */
const PROCESS_INSTANCE = `${hostname()}/${process.pid}/${randomBytes(4).toString("hex")}`;
/** Numbers the sessions of this process, across stores: each session's holder id is unique in the database. */
let sessions = 0;

interface ProcessRow {
  process_id: string;
  size: number;
  delivered_at: string;
  pending: JournalRecord[];
}

function toProcess(row: ProcessRow): JournalProcess {
  return {
    processId: row.process_id,
    size: Number(row.size) || 0,
    deliveredAt: Number(row.delivered_at) || 0,
    pending: Array.isArray(row.pending) ? row.pending.map((r) => ({ ...r })) : [],
  };
}

export interface PgJournalOptions {
  leaseMs?: number;
  /** Default: one id per Node-RED process. */
  instanceId?: string;
}

export class PgJournalStore implements JournalStore {
  readonly leaseMs: number;
  readonly instanceId: string;
  private readonly sessions = new Set<PgJournalSession>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: PgDatabase,
    options: PgJournalOptions = {},
  ) {
    this.leaseMs = Math.max(1000, options.leaseMs ?? DEFAULT_LEASE_MS);
    this.instanceId = options.instanceId ?? PROCESS_INSTANCE;
  }

  open(key: JournalKey): JournalSession {
    const session = new PgJournalSession(this.db, this, key, `${this.instanceId}/${++sessions}`);
    this.sessions.add(session);
    this.timer ??= setInterval(() => void this.tick(), Math.floor(this.leaseMs / 3));
    this.timer.unref?.();
    return session;
  }

  /** @internal */
  detach(session: PgJournalSession): void {
    this.sessions.delete(session);
    if (this.sessions.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Renews every lease of this process at once, then lets each session look for rows to take over. */
  private async tick(): Promise<void> {
    const holders = [...this.sessions].map((s) => s.holder);
    if (holders.length === 0) return;
    try {
      await this.db.query(
        `UPDATE ${this.db.table("processes")} SET lease_until = now() + $2 * interval '1 millisecond'
         WHERE holder = ANY($1)`,
        [holders, this.leaseMs],
      );
    } catch {
      // The database is away: the leases last leaseMs, the next tick tries again.
      return;
    }
    for (const session of this.sessions) await session.look().catch(() => undefined);
  }

  /** Stops renewing (for tests that play a dead instance). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sessions.clear();
  }
}

class PgJournalSession implements JournalSession {
  private readonly queueKey: string;
  private known = new Set<string>();
  private mine = new Set<string>();
  private listener: (() => void) | undefined;
  private released = false;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: PgDatabase,
    private readonly store: PgJournalStore,
    key: JournalKey,
    readonly holder: string,
  ) {
    this.queueKey = journalKeyString(key);
  }

  private get processes(): string {
    return this.db.table("processes");
  }

  /** Writes of one session in order: a later snapshot never lands before an earlier one. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  adopt(): Promise<{ processes: JournalProcess[]; warning?: JournalLoadWarning }> {
    if (this.released) return Promise.resolve({ processes: [] });
    return this.serial(async () => {
      const result = await this.db.query<ProcessRow>(
        `UPDATE ${this.processes} SET holder = $2, lease_until = now() + $3 * interval '1 millisecond'
         WHERE queue_key = $1 AND (holder IS NULL OR lease_until < now())
         RETURNING process_id, size, delivered_at, pending`,
        [this.queueKey, this.holder, this.store.leaseMs],
      );
      const processes = result.rows.map(toProcess);
      for (const p of processes) {
        this.mine.add(p.processId);
        this.known.add(p.processId);
      }
      return { processes };
    });
  }

  save(processes: JournalProcess[]): Promise<void> {
    if (this.released) return Promise.resolve();
    const rows = processes.map((p) => ({
      process_id: p.processId,
      size: p.size,
      delivered_at: p.deliveredAt,
      pending: p.pending,
    }));
    return this.serial(async () => {
      // One statement: rows this consumer no longer holds go, the others are written with a fresh lease. A row
      // someone else holds under a live lease is left alone.
      await this.db.query(
        `WITH input AS (
           SELECT * FROM jsonb_to_recordset($3::jsonb) AS x(process_id text, size integer, delivered_at bigint, pending jsonb)
         ), gone AS (
           DELETE FROM ${this.processes} p WHERE p.queue_key = $1 AND p.holder = $2
             AND p.process_id NOT IN (SELECT process_id FROM input)
         )
         INSERT INTO ${this.processes} AS p (queue_key, process_id, holder, lease_until, size, delivered_at, pending)
         SELECT $1, process_id, $2, now() + $4 * interval '1 millisecond', size, delivered_at, pending FROM input
         ON CONFLICT (queue_key, process_id) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until,
           size = excluded.size, delivered_at = excluded.delivered_at, pending = excluded.pending
         WHERE p.holder = $2 OR p.holder IS NULL OR p.lease_until < now()`,
        [this.queueKey, this.holder, JSON.stringify(rows), this.store.leaseMs],
      );
      this.mine = new Set(processes.map((p) => p.processId));
      for (const id of this.mine) this.known.add(id);
    });
  }

  release(): Promise<void> {
    if (this.released) return Promise.resolve();
    this.released = true;
    this.listener = undefined;
    this.store.detach(this);
    // Released rows are free at once: the next consumer of the queue (here or on another instance) takes them.
    return this.serial(async () => {
      await this.db.query(
        `UPDATE ${this.processes} SET holder = NULL, lease_until = NULL WHERE queue_key = $1 AND holder = $2`,
        [this.queueKey, this.holder],
      );
    });
  }

  knownProcessIds(): Set<string> {
    return new Set([...this.known, ...this.mine]);
  }

  watch(onAdoptable: () => void): void {
    this.listener = onAdoptable;
  }

  /** @internal Refreshes the known process ids; tells the consumer when rows are free to take over. */
  async look(): Promise<void> {
    if (this.released) return;
    const result = await this.db.query<{ process_id: string; free: boolean }>(
      `SELECT process_id, (holder IS NULL OR lease_until < now()) AS free FROM ${this.processes} WHERE queue_key = $1`,
      [this.queueKey],
    );
    this.known = new Set(result.rows.map((r) => r.process_id));
    if (this.listener && result.rows.some((r) => r.free)) this.listener();
  }
}

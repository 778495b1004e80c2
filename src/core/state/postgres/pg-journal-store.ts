import { journalKeyString } from "../journal-files";
import type {
  InstanceRegistry,
  JournalKey,
  JournalLoadWarning,
  JournalProcess,
  JournalRecord,
  JournalSession,
  JournalStore,
  PeerJournal,
} from "../state-seam";
import type { PgDatabase } from "./pg-database";
import type { PgInstanceRegistry } from "./pg-instance-registry";

/**
 * Held process ids in PostgreSQL (DESIGN.md, "Scale-out" (3)): one row per process id, with the consumer (session)
 * and the instance that hold it and a lease. The instance registry's heartbeat (pg-instance-registry.ts) renews the
 * leases of everything its instance holds; a dead instance stops, and once its leases ran out any live consumer of
 * the same queue adopts the rows (the consumer's takeover asks `abandoned` every heartbeat) and re-selects them,
 * with their delivery counts. A row under a lease that has not run out is never taken: a live instance's process
 * ids stay its own.
 *
 * The bound: a dead instance's held events are re-selected by a live one within lease + one heartbeat (lease/3) +
 * one re-select request.
 *
 * Before each get a consumer marks that a get is in flight (table `fetches`): until the get answers, its records
 * are held under a process id no row names yet, and the neighbours' orphan sweeps must leave such records alone
 * while the marking instance lives.
 */

export const DEFAULT_LEASE_MS = 15_000;

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

/** Numbers the sessions of this process, across stores: each session's holder id is unique in the database. */
let sessionSerial = 0;

export class PgJournalStore implements JournalStore {
  /** The sessions of this process by queue key: what knownProcessIds and fetchingSince answer from. */
  readonly byKey = new Map<string, Set<PgJournalSession>>();

  constructor(
    private readonly db: PgDatabase,
    readonly leaseMs: number = DEFAULT_LEASE_MS,
  ) {}

  open(key: JournalKey, registry: InstanceRegistry): JournalSession {
    const session = new PgJournalSession(this.db, this, key, registry, `${registry.instanceId}#${++sessionSerial}`);
    const k = journalKeyString(key);
    const set = this.byKey.get(k) ?? new Set<PgJournalSession>();
    set.add(session);
    this.byKey.set(k, set);
    return session;
  }
}

class PgJournalSession implements JournalSession {
  readonly queueKey: string;
  /** Process ids of this consumer, as last saved or adopted. */
  mine = new Set<string>();
  /** Its gets in flight (start times). */
  readonly fetches: number[] = [];
  private released = false;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: PgDatabase,
    private readonly store: PgJournalStore,
    key: JournalKey,
    private readonly registry: InstanceRegistry,
    readonly holder: string,
  ) {
    this.queueKey = journalKeyString(key);
  }

  private get t(): { processes: string; fetches: string; instances: string } {
    return {
      processes: this.db.table("processes"),
      fetches: this.db.table("fetches"),
      instances: this.db.table("instances"),
    };
  }

  private siblings(): Set<PgJournalSession> {
    return this.store.byKey.get(this.queueKey) ?? new Set();
  }

  /** Writes of one session in order: a later snapshot never lands before an earlier one. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** The registry renews the leases of what we hold: make sure it runs once we hold anything. */
  private keepAlive(): void {
    (this.registry as Partial<PgInstanceRegistry>).startRenewing?.();
  }

  adopt(): Promise<{ processes: JournalProcess[]; warning?: JournalLoadWarning }> {
    if (this.released) return Promise.resolve({ processes: [] });
    return this.serial(async () => {
      this.keepAlive();
      const result = await this.db.query<ProcessRow>(
        `UPDATE ${this.t.processes} SET holder = $2, instance_id = $3, lease_until = now() + $4 * interval '1 millisecond'
         WHERE queue_key = $1 AND (holder IS NULL OR lease_until < now())
         RETURNING process_id, size, delivered_at, pending`,
        [this.queueKey, this.holder, this.registry.instanceId, this.store.leaseMs],
      );
      const processes = result.rows.map(toProcess);
      for (const p of processes) this.mine.add(p.processId);
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
      this.keepAlive();
      // One statement: rows this consumer no longer holds go, the others are written with a fresh lease. A row
      // someone else holds under a live lease is left alone.
      await this.db.query(
        `WITH input AS (
           SELECT * FROM jsonb_to_recordset($3::jsonb) AS x(process_id text, size integer, delivered_at bigint, pending jsonb)
         ), gone AS (
           DELETE FROM ${this.t.processes} p WHERE p.queue_key = $1 AND p.holder = $2
             AND p.process_id NOT IN (SELECT process_id FROM input)
         )
         INSERT INTO ${this.t.processes} AS p
           (queue_key, process_id, holder, instance_id, lease_until, size, delivered_at, pending)
         SELECT $1, process_id, $2, $5, now() + $4 * interval '1 millisecond', size, delivered_at, pending FROM input
         ON CONFLICT (queue_key, process_id) DO UPDATE SET holder = excluded.holder, instance_id = excluded.instance_id,
           lease_until = excluded.lease_until, size = excluded.size, delivered_at = excluded.delivered_at,
           pending = excluded.pending
         WHERE p.holder = $2 OR p.holder IS NULL OR p.lease_until < now()`,
        [this.queueKey, this.holder, JSON.stringify(rows), this.store.leaseMs, this.registry.instanceId],
      );
      this.mine = new Set(processes.map((p) => p.processId));
    });
  }

  beginFetch(since: number): Promise<void> {
    if (this.released) return Promise.resolve();
    this.fetches.push(since);
    return this.serial(async () => {
      this.keepAlive();
      await this.db.query(
        `INSERT INTO ${this.t.fetches} (holder, since, queue_key, instance_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING`,
        [this.holder, since, this.queueKey, this.registry.instanceId],
      );
    });
  }

  endFetch(since: number, _write: boolean): Promise<void> {
    const i = this.fetches.indexOf(since);
    if (i >= 0) this.fetches.splice(i, 1);
    // Always written (there is no journal line to carry the mark's end); never rejected: callers may not wait.
    return this.serial(async () => {
      await this.db.query(`DELETE FROM ${this.t.fetches} WHERE holder = $1 AND since = $2`, [this.holder, since]);
    }).catch(() => undefined);
  }

  release(): Promise<void> {
    if (this.released) return Promise.resolve();
    this.released = true;
    this.siblings().delete(this);
    this.fetches.length = 0;
    // Released rows are free at once: the next consumer of the queue (here or on another instance) takes them.
    return this.serial(async () => {
      await this.db.query(
        `UPDATE ${this.t.processes} SET holder = NULL, lease_until = NULL WHERE queue_key = $1 AND holder = $2`,
        [this.queueKey, this.holder],
      );
      await this.db.query(`DELETE FROM ${this.t.fetches} WHERE holder = $1`, [this.holder]);
    });
  }

  knownProcessIds(): Set<string> {
    const ids = new Set(this.mine);
    for (const s of this.siblings()) for (const id of s.mine) ids.add(id);
    return ids;
  }

  fetchingSince(): number | undefined {
    let oldest: number | undefined;
    for (const s of [this, ...this.siblings()]) {
      for (const t of s.fetches) if (oldest === undefined || t < oldest) oldest = t;
    }
    return oldest;
  }

  async peers(): Promise<PeerJournal[]> {
    const me = this.registry.instanceId;
    const held = await this.db.query<{ instance_id: string; ids: string[] }>(
      `SELECT instance_id, array_agg(process_id) AS ids FROM ${this.t.processes}
       WHERE queue_key = $1 AND holder IS NOT NULL AND lease_until >= now() AND instance_id <> $2 GROUP BY instance_id`,
      [this.queueKey, me],
    );
    const fetching = await this.db.query<{ instance_id: string; since: string }>(
      `SELECT f.instance_id, min(f.since) AS since FROM ${this.t.fetches} f
       JOIN ${this.t.instances} i ON i.instance_id = f.instance_id AND i.lease_until >= now()
       WHERE f.queue_key = $1 AND f.instance_id <> $2 GROUP BY f.instance_id`,
      [this.queueKey, me],
    );
    const peers = new Map<string, PeerJournal>();
    for (const r of held.rows) peers.set(r.instance_id, { instanceId: r.instance_id, processIds: new Set(r.ids) });
    for (const r of fetching.rows) {
      const peer = peers.get(r.instance_id) ?? { instanceId: r.instance_id, processIds: new Set<string>() };
      peer.fetching = Number(r.since);
      peers.set(r.instance_id, peer);
    }
    return [...peers.values()];
  }

  async abandoned(): Promise<boolean> {
    const result = await this.db.query(
      `SELECT 1 FROM ${this.t.processes} WHERE queue_key = $1 AND (holder IS NULL OR lease_until < now()) LIMIT 1`,
      [this.queueKey],
    );
    return (result.rowCount ?? 0) > 0;
  }
}

import type { Snapshot, SnapshotStore, SnapshotStoreStats, SnapshotStores, StagedSnapshot } from "../snapshot-store";
import type { PgDatabase } from "./pg-database";

/**
 * The change snapshots (issue 21) in PostgreSQL, as snapshot-store.ts lays it out: `snapshots_acked` (the
 * acknowledged state per object) and `snapshots_staged` (per event in flight the state it becomes once acked),
 * every method one statement or one transaction, so several instances share one history: an event taken over from a
 * dead instance is compared with the state the whole flow acknowledged, not with one machine's. The newer-read rule
 * (a higher `seq` wins) keeps commits of two events of one object in order whichever instance acks last.
 */

interface StagedRow {
  ref: string;
  key: string;
  snapshot: Snapshot | null;
}

function snapshotOf(value: unknown): Snapshot | null {
  const v = value as Snapshot | null;
  return v && typeof v === "object" && typeof v.seq === "number" && typeof v.fields === "object" ? v : null;
}

export class PgSnapshotStores implements SnapshotStores {
  constructor(private readonly db: PgDatabase) {}

  async open(namespace: string): Promise<SnapshotStore> {
    await this.db.ensureReady();
    return new PgSnapshotStore(this.db, namespace);
  }
}

export class PgSnapshotStore implements SnapshotStore {
  constructor(
    private readonly db: PgDatabase,
    private readonly ns: string,
  ) {}

  private get acked(): string {
    return this.db.table("snapshots_acked");
  }

  private get stagedTable(): string {
    return this.db.table("snapshots_staged");
  }

  async read(keys: readonly string[]): Promise<Map<string, Snapshot>> {
    const found = new Map<string, Snapshot>();
    if (keys.length === 0) return found;
    const result = await this.db.query<{ key: string; fields: Record<string, unknown>; seq: string }>(
      `SELECT key, fields, seq FROM ${this.acked} WHERE ns = $1 AND key = ANY($2)`,
      [this.ns, [...keys]],
    );
    for (const r of result.rows) found.set(r.key, { fields: r.fields, seq: Number(r.seq) });
    return found;
  }

  async stage(entries: readonly StagedSnapshot[]): Promise<void> {
    if (entries.length === 0) return;
    await this.db.query(
      `INSERT INTO ${this.stagedTable} (ns, ref, key, snapshot)
       SELECT $1, ref, key, snapshot FROM jsonb_to_recordset($2::jsonb) AS x(ref text, key text, snapshot jsonb)
       ON CONFLICT (ns, ref) DO UPDATE SET key = excluded.key, snapshot = excluded.snapshot`,
      [this.ns, JSON.stringify(entries)],
    );
  }

  async commit(refs: readonly string[]): Promise<void> {
    if (refs.length === 0) return;
    await this.db.transaction(async (client) => {
      const staged = await client.query<StagedRow>(
        `DELETE FROM ${this.stagedTable} WHERE ns = $1 AND ref = ANY($2) RETURNING ref, key, snapshot`,
        [this.ns, [...refs]],
      );
      // In the order the refs were given, as the embedded store applies them.
      const byRef = new Map(staged.rows.map((r) => [r.ref, r]));
      await this.apply(
        client,
        refs.flatMap((ref) => {
          const row = byRef.get(ref);
          return row ? [{ key: row.key, snapshot: snapshotOf(row.snapshot) }] : [];
        }),
      );
    });
  }

  async discard(refs: readonly string[]): Promise<void> {
    if (refs.length === 0) return;
    await this.db.query(`DELETE FROM ${this.stagedTable} WHERE ns = $1 AND ref = ANY($2)`, [this.ns, [...refs]]);
  }

  async put(entries: readonly Omit<StagedSnapshot, "ref">[]): Promise<void> {
    if (entries.length === 0) return;
    await this.db.transaction((client) => this.apply(client, entries));
  }

  async staged(processId?: string): Promise<StagedSnapshot[]> {
    const result = await this.db.query<StagedRow>(
      `SELECT ref, key, snapshot FROM ${this.stagedTable}
       WHERE ns = $1 AND ($2::text IS NULL OR left(ref, length($2) + 1) = $2 || ':') ORDER BY ref`,
      [this.ns, processId ?? null],
    );
    return result.rows.map((r) => ({ ref: r.ref, key: r.key, snapshot: snapshotOf(r.snapshot) }));
  }

  async stats(): Promise<SnapshotStoreStats> {
    const result = await this.db.query<{ objects: number; staged: number; bytes: string }>(
      `SELECT (SELECT count(*)::int FROM ${this.acked} WHERE ns = $1) AS objects,
              (SELECT count(*)::int FROM ${this.stagedTable} WHERE ns = $1) AS staged,
              pg_total_relation_size($2) + pg_total_relation_size($3) AS bytes`,
      [this.ns, this.acked, this.stagedTable],
    );
    const row = result.rows[0];
    // bytes: both tables, every namespace (a database does not size one namespace's rows).
    return { objects: row?.objects ?? 0, staged: row?.staged ?? 0, bytes: Number(row?.bytes ?? 0) };
  }

  async close(): Promise<void> {
    // The pool belongs to the state stores: nothing of its own to close.
  }

  /** Each entry in turn: a delete forgets the object; a state replaces the acked one unless that is newer. */
  private async apply(
    client: { query: PgDatabase["pool"]["query"] },
    entries: readonly Omit<StagedSnapshot, "ref">[],
  ): Promise<void> {
    for (const e of entries) {
      if (e.snapshot === null) {
        await client.query(`DELETE FROM ${this.acked} WHERE ns = $1 AND key = $2`, [this.ns, e.key]);
        continue;
      }
      await client.query(
        `INSERT INTO ${this.acked} AS a (ns, key, fields, seq) VALUES ($1, $2, $3, $4)
         ON CONFLICT (ns, key) DO UPDATE SET fields = excluded.fields, seq = excluded.seq WHERE a.seq <= excluded.seq`,
        [this.ns, e.key, JSON.stringify(e.snapshot.fields), e.snapshot.seq],
      );
    }
  }
}

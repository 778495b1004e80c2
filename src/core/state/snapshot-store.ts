/**
 * The change snapshots of issue 21 behind the state seam (DESIGN.md, "Scale-out"): per tracked object, the
 * fields of its last ACKNOWLEDGED state, and per event in flight the state it will become once acked. The
 * embedded implementation (lmdb-snapshot-store.ts) serves one machine; a PostgreSQL one (issue 20) fits the same
 * interface: every method is one transaction, keys are plain text, values plain JSON.
 *
 * Two steps instead of one write, so that neither crash window loses or repeats a change:
 * - stage() runs BEFORE the event is emitted: the candidate state is durable while the event is unacked;
 * - commit() runs when the ack is confirmed; if the process dies between the portal's clear and commit(), the
 *   next start finds the staged entry and the journal tells whether its record is gone (acked: commit) or
 *   comes back (redelivered: compared again with the unchanged acked state).
 *
 * A PostgreSQL implementation fits it as two tables, every method one transaction:
 *   acked(ns text, key text, fields jsonb, seq bigint, primary key (ns, key))
 *   staged(ns text, ref text, key text, snapshot jsonb null, primary key (ns, ref))
 * commit = for the refs' rows: upsert into acked where the staged seq is newer (or delete for a null snapshot),
 * delete from staged. Several instances then share one history; the newer-read rule keeps their commits in order.
 */

/** An object's fields as kept for comparing, and the order of the read that produced them. */
export interface Snapshot {
  fields: Record<string, unknown>;
  /** Increases with each read (time-based): an older read acked last never overwrites a newer state. */
  seq: number;
}

/** A state waiting for its event's ack. `snapshot` null = the object is gone (delete): commit forgets it. */
export interface StagedSnapshot {
  /** The event's record: `<processId>:<record id>`. */
  ref: string;
  /** The object: see objectKey() in change-tracker.ts. */
  key: string;
  snapshot: Snapshot | null;
}

export interface SnapshotStoreStats {
  /** Objects with an acknowledged state. */
  objects: number;
  /** Staged entries (events in flight). */
  staged: number;
  /** Bytes the store takes (on disk, or in the database). */
  bytes: number;
}

/**
 * One namespace (portal host + application + connector + watched fields) of the snapshot store. All writes are
 * durable when their promise resolves (a SIGKILL right after loses nothing of them).
 */
export interface SnapshotStore {
  /** Acknowledged states of these objects (absent = never seen, or forgotten). */
  read(keys: readonly string[]): Promise<Map<string, Snapshot>>;
  /** Staged entries replace earlier ones of the same ref. */
  stage(entries: readonly StagedSnapshot[]): Promise<void>;
  /** The staged entries of these refs become the objects' acknowledged states (a newer seq wins); unknown refs are ignored. */
  commit(refs: readonly string[]): Promise<void>;
  /** Staged entries dropped without touching the acknowledged state (marked as errors). */
  discard(refs: readonly string[]): Promise<void>;
  /** Stage and commit in one step (auto mode: the state advances when the event is emitted). */
  put(entries: readonly Omit<StagedSnapshot, "ref">[]): Promise<void>;
  /** The staged entries of the namespace, or of one process's records (refs `<processId>:<id>`). */
  staged(processId?: string): Promise<StagedSnapshot[]>;
  stats(): Promise<SnapshotStoreStats>;
  close(): Promise<void>;
}

/**
 * Where a state seam keeps snapshots (meant for the seam's `StateStores`, beside tokens and journals): files get
 * the embedded store (LmdbSnapshotStores), PostgreSQL a table keyed by namespace + key.
 */
export interface SnapshotStores {
  open(namespace: string): Promise<SnapshotStore>;
}

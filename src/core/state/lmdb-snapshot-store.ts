import { readdirSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { open, type RootDatabase } from "lmdb";
import { Bitrix24Error } from "../rest/errors";
import type { Snapshot, SnapshotStore, SnapshotStoreStats, SnapshotStores, StagedSnapshot } from "./snapshot-store";

/**
 * The embedded snapshot store: LMDB through the `lmdb` package. Why this one (issue 21): its npm packages ship
 * prebuilt binaries (`@lmdb/lmdb-linux-x64` etc.), so it installs without build tools and downloads nothing
 * (its install script only looks for a prebuilt and is not needed: package.json's allowScripts denies it);
 * LMDB is a copy-on-write B+tree whose commit is one atomic page switch, so a SIGKILL at any point leaves the
 * last committed state whole (no torn or half-written file, no recovery step); the data lives in a memory map
 * outside the JS heap, so 100 000 tracked objects cost the heap nothing (SQLite in WebAssembly keeps its page
 * cache inside the heap, PGlite a whole PostgreSQL); it is well kept (HarperDB's, weekly downloads in millions).
 *
 * One file per state directory (`changes.lmdb`), shared by every get node of the process that uses it;
 * keys are [kind, namespace, id] so namespaces never meet: "a" = acknowledged state, "s" = staged.
 */

type Key = [string, string, string];

interface OpenEnv {
  db: RootDatabase<unknown, Key>;
  users: number;
}

const envs = new Map<string, OpenEnv>();

function storeError(description: string, cause?: unknown): Bitrix24Error {
  return new Bitrix24Error(
    { code: "SNAPSHOT_STORE_FAILED", description: `change snapshots: ${description}`, retryable: false },
    { cause },
  );
}

function isSnapshot(v: unknown): v is Snapshot {
  return typeof v === "object" && v !== null && typeof (v as Snapshot).seq === "number";
}

function isStaged(v: unknown): v is StagedSnapshot {
  return typeof v === "object" && v !== null && typeof (v as StagedSnapshot).key === "string";
}

/** The embedded snapshot stores of one state folder. */
export class LmdbSnapshotStores implements SnapshotStores {
  constructor(readonly dir: string) {}

  open(namespace: string): Promise<SnapshotStore> {
    return LmdbSnapshotStore.open(this.dir, namespace);
  }
}

export class LmdbSnapshotStore implements SnapshotStore {
  private closed = false;

  private constructor(
    private readonly path: string,
    private readonly env: OpenEnv,
    private readonly ns: string,
  ) {}

  /** Opens (or shares) `<dir>/changes.lmdb` and returns the namespace `ns` of it. */
  static async open(dir: string, ns: string): Promise<LmdbSnapshotStore> {
    const path = join(dir, "changes.lmdb");
    let env = envs.get(path);
    if (!env) {
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        // Default sync: a commit's promise resolves once the transaction is in the file (mmap'd pages the OS
        // keeps across a process kill); noMemInit/encryption are not needed for a few hundred bytes per object.
        const db = open<unknown, Key>({ path, compression: false });
        env = { db, users: 0 };
      } catch (err) {
        throw storeError(`cannot open ${path}: ${err instanceof Error ? err.message : String(err)}`, err);
      }
      envs.set(path, env);
    }
    env.users++;
    return new LmdbSnapshotStore(path, env, ns);
  }

  private get db(): RootDatabase<unknown, Key> {
    if (this.closed) throw storeError("the store is closed");
    return this.env.db;
  }

  async read(keys: readonly string[]): Promise<Map<string, Snapshot>> {
    const db = this.db;
    const found = new Map<string, Snapshot>();
    for (const key of keys) {
      const v = db.get(["a", this.ns, key]);
      if (isSnapshot(v)) found.set(key, v);
    }
    return found;
  }

  async stage(entries: readonly StagedSnapshot[]): Promise<void> {
    if (entries.length === 0) return;
    const db = this.db;
    await db.transaction(() => {
      for (const e of entries) db.put(["s", this.ns, e.ref], e);
    });
  }

  async commit(refs: readonly string[]): Promise<void> {
    if (refs.length === 0) return;
    const db = this.db;
    await db.transaction(() => {
      for (const ref of refs) {
        const staged = db.get(["s", this.ns, ref]);
        if (!isStaged(staged)) continue;
        this.apply(db, staged);
        db.remove(["s", this.ns, ref]);
      }
    });
  }

  async discard(refs: readonly string[]): Promise<void> {
    if (refs.length === 0) return;
    const db = this.db;
    await db.transaction(() => {
      for (const ref of refs) db.remove(["s", this.ns, ref]);
    });
  }

  async put(entries: readonly Omit<StagedSnapshot, "ref">[]): Promise<void> {
    if (entries.length === 0) return;
    const db = this.db;
    await db.transaction(() => {
      for (const e of entries) this.apply(db, e);
    });
  }

  async staged(processId?: string): Promise<StagedSnapshot[]> {
    const out: StagedSnapshot[] = [];
    const from = processId === undefined ? "" : `${processId}:`;
    for (const { value } of this.db.getRange({ start: ["s", this.ns, from], end: ["s", this.ns, `${from}\uffff`] })) {
      if (isStaged(value)) out.push(value);
    }
    return out;
  }

  async stats(): Promise<SnapshotStoreStats> {
    const db = this.db;
    const count = (kind: string) => db.getKeysCount({ start: [kind, this.ns, ""], end: [kind, this.ns, "\uffff"] });
    let bytes = 0;
    try {
      for (const name of readdirSync(this.path)) bytes += statSync(join(this.path, name)).size;
    } catch {
      bytes = statSync(this.path).size; // a single-file layout
    }
    return { objects: count("a"), staged: count("s"), bytes };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (--this.env.users > 0) return;
    envs.delete(this.path);
    await this.env.db.close();
  }

  /** The newer read wins: of two events of one object in flight, the one acked last may hold the older read. */
  private apply(db: RootDatabase<unknown, Key>, e: Omit<StagedSnapshot, "ref">): void {
    const key: Key = ["a", this.ns, e.key];
    if (e.snapshot === null) {
      db.remove(key);
      return;
    }
    const current = db.get(key);
    if (isSnapshot(current) && current.seq > e.snapshot.seq) return;
    db.put(key, e.snapshot);
  }
}

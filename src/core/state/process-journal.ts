import { createHash } from "node:crypto";
import { fdatasync as fdatasyncCallback, promises as fs, write as writeCallback } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type {
  JournalKey,
  JournalLoadWarning,
  JournalProcess,
  JournalRecord,
  JournalSession,
  JournalStore,
} from "./state-seam";

// The callback API on a plain descriptor: the append path runs once per batch, and a FileHandle per call costs
// more main-thread time than the write itself.
const fdatasync = promisify(fdatasyncCallback);
const writeFd = promisify(writeCallback);

/** Past this size the next write replaces the log with the current state alone. */
const COMPACT_BYTES = 1024 * 1024;

/**
 * The process-id journal (DESIGN.md, "Delivery semantics"): which process ids a consumer holds on the portal and
 * which of their records are not acknowledged yet, with delivery counts. It lives in a file in the Node-RED user
 * directory and is fsync'd before events are emitted, so a crash never loses a process id (a lost process id
 * means its records stay held on the portal until its cleanup agent deletes them, about 30 days later).
 *
 * The file is a log: one line per write, each line the WHOLE state (a version 1 journal document), the last
 * complete line wins. A write appends a line and fdatasyncs it: two file-system calls on an open descriptor
 * instead of replacing the file (temp file, fsync, rename, directory fsync: nine calls), which a drain pays once
 * per batch before it may emit. A crash mid-append leaves a torn last line, which the reader skips: the state
 * before it, whose events were the last ones emitted. The first write after start, and any write that would let
 * the log outgrow COMPACT_BYTES, replaces the file (atomically, durably) with the current state alone.
 *
 * Keyed by portal host + client id + auth_connector + error flag, NOT by node id (node ids change on copy and
 * import): any consumer with the same key adopts the journal. Consumers of one key in one Node-RED process
 * share one SharedJournal, each owning its own section; what no live consumer has adopted yet is kept and
 * written along, so nothing is dropped before someone re-selected it.
 */

// The types live in the seam (state-seam.ts); re-exported here for the importers that predate it.
export type { JournalKey, JournalLoadWarning, JournalProcess, JournalRecord } from "./state-seam";

interface JournalFile {
  version: 1;
  key: JournalKey;
  updatedAt: number;
  processes: JournalProcess[];
}

/** The string that identifies a journal; also what goes into its file name (hashed). */
export function journalKeyString(key: JournalKey): string {
  return [key.portalHost.toLowerCase(), key.clientId, key.authConnector, String(key.error)].join("\n");
}

/** File name of a key's journal: readable prefix for people looking at the directory, hash for uniqueness. */
export function journalFileName(key: JournalKey): string {
  const hash = createHash("sha256").update(journalKeyString(key)).digest("hex").slice(0, 16);
  const host = key.portalHost.toLowerCase().replace(/[^a-z0-9.-]+/g, "_") || "portal";
  return `journal-${host}-${hash}.json`;
}

function isRecord(value: unknown): value is JournalRecord {
  const r = value as JournalRecord;
  return (
    typeof r === "object" &&
    r !== null &&
    Number.isSafeInteger(r.id) &&
    typeof r.messageId === "string" &&
    Number.isSafeInteger(r.deliveryCount)
  );
}

/**
 * The last complete line of a journal log. Lines that do not parse are skipped from the end (a torn append);
 * a file without any parseable line throws, like a garbled file.
 */
function lastEntry(text: string): unknown {
  const lines = text.split("\n");
  let firstError: unknown;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i].trim() === "") continue;
    try {
      return JSON.parse(lines[i]);
    } catch (err) {
      firstError ??= err;
    }
  }
  throw firstError ?? new Error("the journal is empty");
}

function parseProcesses(text: string, key: JournalKey): JournalProcess[] {
  const data = lastEntry(text) as Partial<JournalFile>;
  if (data.version !== 1 || !Array.isArray(data.processes)) throw new Error("not a version 1 journal");
  if (!data.key || journalKeyString(data.key as JournalKey) !== journalKeyString(key)) {
    throw new Error("the journal belongs to another portal, application, connector or error flag");
  }
  return data.processes
    .filter((p): p is JournalProcess => typeof p?.processId === "string" && p.processId !== "")
    .map((p) => ({
      processId: p.processId,
      size: Number.isSafeInteger(p.size) && p.size > 0 ? p.size : 0,
      deliveredAt: Number.isFinite(p.deliveredAt) ? p.deliveredAt : 0,
      pending: Array.isArray(p.pending) ? p.pending.filter(isRecord) : [],
    }));
}

function cloneProcess(p: JournalProcess): JournalProcess {
  return { ...p, pending: p.pending.map((r) => ({ ...r })) };
}

/** Replaces `file` atomically and durably: temp file, fsync, rename, fsync of the directory. */
export async function writeFileDurably(dir: string, file: string, text: string | Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  const handle = await fs.open(tmp, "w", 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await syncDirectory(dir);
}

async function syncDirectory(dir: string): Promise<void> {
  // A rename is durable only once the directory entry is; some platforms refuse fsync on a directory.
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, "r");
    await handle.sync();
  } catch {
    // best effort
  } finally {
    await handle?.close();
  }
}

export class SharedJournal {
  readonly file: string;
  private readonly sections = new Map<symbol, JournalProcess[]>();
  private unclaimed: JournalProcess[] = [];
  private loaded = false;
  private chain: Promise<void> = Promise.resolve();
  private nextWrite: Promise<void> | undefined;
  /** Set once the directory is known to exist: a drain writes per batch, a mkdir each time is wasted. */
  private dirReady = false;
  /** The log open for appending, once this process has written the file; closed when the last owner leaves. */
  private fd: fs.FileHandle | undefined;
  private fileBytes = 0;

  constructor(
    readonly dir: string,
    readonly key: JournalKey,
  ) {
    this.file = join(dir, journalFileName(key));
  }

  /** Owners currently attached (live consumers of this key). */
  get owners(): number {
    return this.sections.size;
  }

  attach(): JournalHandle {
    const owner = Symbol("journal-owner");
    if (this.sections.size === 0) this.loaded = false; // nobody alive: the file is the truth again
    this.sections.set(owner, []);
    return new JournalHandle(this, owner);
  }

  /** Every process id this journal knows: held by a live owner or waiting to be adopted. */
  knownProcessIds(): Set<string> {
    const ids = new Set<string>();
    for (const p of this.unclaimed) ids.add(p.processId);
    for (const section of this.sections.values()) for (const p of section) ids.add(p.processId);
    return ids;
  }

  /** @internal */
  async adopt(owner: symbol): Promise<{ processes: JournalProcess[]; warning?: JournalLoadWarning }> {
    let warning: JournalLoadWarning | undefined;
    if (!this.loaded) {
      this.loaded = true;
      const read = await this.readFile();
      warning = read.warning;
      const held = this.knownProcessIds();
      this.unclaimed.push(...read.processes.filter((p) => !held.has(p.processId)));
    }
    const adopted = this.unclaimed;
    this.unclaimed = [];
    const section = this.sections.get(owner);
    if (section) section.push(...adopted.map(cloneProcess));
    return { processes: adopted.map(cloneProcess), warning };
  }

  /**
   * @internal Replaces the owner's section and resolves once a write containing it is on disk. The journal keeps
   * `processes` as they are (no copy: the consumer builds a fresh snapshot per save), so callers must not change
   * them afterwards.
   */
  save(owner: symbol, processes: JournalProcess[]): Promise<void> {
    if (!this.sections.has(owner)) return Promise.resolve();
    this.sections.set(owner, processes);
    return this.requestWrite();
  }

  /** @internal The owner's processes stay in the file (unclaimed) for whoever starts next. */
  release(owner: symbol): Promise<void> {
    const section = this.sections.get(owner);
    if (!section) return Promise.resolve();
    this.sections.delete(owner);
    this.unclaimed.push(...section);
    const written = this.requestWrite();
    // Nobody left to write: let the descriptor go (a redeploy's consumer starts with a fresh, compacted file).
    this.chain = this.chain.then(() => (this.sections.size === 0 ? this.closeLog() : undefined));
    return written;
  }

  private async closeLog(): Promise<void> {
    const fd = this.fd;
    this.fd = undefined;
    this.fileBytes = 0;
    await fd?.close().catch(() => undefined);
  }

  private async readFile(): Promise<{ processes: JournalProcess[]; warning?: JournalLoadWarning }> {
    let text: string;
    try {
      text = await fs.readFile(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { processes: [] };
      throw err;
    }
    try {
      return { processes: parseProcesses(text, this.key) };
    } catch (err) {
      // Keep the unreadable file for inspection; the orphan sweep finds the records it named.
      const movedTo = `${this.file}.unreadable-${Date.now()}`;
      await fs.rename(this.file, movedTo).catch(() => undefined);
      return {
        processes: [],
        warning: {
          code: "JOURNAL_UNREADABLE",
          file: this.file,
          movedTo,
          description: err instanceof Error ? err.message : String(err),
        },
      };
    }
  }

  /**
   * Writes are serialised; a request made while a write is queued (not yet started) joins it, so a burst of
   * saves costs at most two writes. The snapshot is taken when the write starts, so it contains every change
   * made before.
   */
  private requestWrite(): Promise<void> {
    if (this.nextWrite) return this.nextWrite;
    const write = this.chain.then(() => {
      this.nextWrite = undefined;
      return this.writeNow();
    });
    this.nextWrite = write;
    this.chain = write.catch(() => undefined);
    return write;
  }

  private async writeNow(): Promise<void> {
    const processes = [...this.unclaimed, ...[...this.sections.values()].flat()];
    if (!this.dirReady) {
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.dirReady = true;
    }
    try {
      await this.writeProcesses(processes);
    } catch (err) {
      // Someone removed the directory since (a user cleaning up, a test): make it again, once.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      await this.writeProcesses(processes);
    }
  }

  private async writeProcesses(processes: JournalProcess[]): Promise<void> {
    if (processes.length === 0) {
      await this.closeLog();
      await fs.rm(this.file, { force: true });
      await syncDirectory(this.dir);
      return;
    }
    const data: JournalFile = { version: 1, key: this.key, updatedAt: Date.now(), processes };
    const line = Buffer.from(`${JSON.stringify(data)}\n`, "utf8");
    if (this.fd && this.fileBytes + line.length <= COMPACT_BYTES) {
      try {
        const { bytesWritten } = await writeFd(this.fd.fd, line, 0, line.length);
        if (bytesWritten !== line.length) throw new Error("short write");
        await fdatasync(this.fd.fd);
        this.fileBytes += line.length;
        return;
      } catch {
        // A short or failed append may have left a torn line: replace the file below, which drops it.
      }
    }
    await this.closeLog();
    await writeFileDurably(this.dir, this.file, line);
    this.fd = await fs.open(this.file, "a");
    this.fileBytes = line.length;
  }
}

/** One consumer's view of a shared journal. */
export class JournalHandle implements JournalSession {
  private released = false;

  constructor(
    readonly journal: SharedJournal,
    private readonly owner: symbol,
  ) {}

  /** Takes over the processes no live consumer holds (on first use: what the file lists). */
  adopt(): Promise<{ processes: JournalProcess[]; warning?: JournalLoadWarning }> {
    if (this.released) return Promise.resolve({ processes: [] });
    return this.journal.adopt(this.owner);
  }

  /** Replaces this consumer's processes (kept as given, not copied); resolves when they are durably on disk. */
  save(processes: JournalProcess[]): Promise<void> {
    if (this.released) return Promise.resolve();
    return this.journal.save(this.owner, processes);
  }

  /** Detaches: the processes stay in the file for the next consumer with the same key. */
  release(): Promise<void> {
    if (this.released) return Promise.resolve();
    this.released = true;
    return this.journal.release(this.owner);
  }

  knownProcessIds(): Set<string> {
    return this.journal.knownProcessIds();
  }
}

const journals = new Map<string, SharedJournal>();

/** The process-wide journal of a key in a directory (one instance per file, shared by its consumers). */
export function openJournal(dir: string, key: JournalKey): JournalHandle {
  const file = join(dir, journalFileName(key));
  let journal = journals.get(file);
  if (!journal) {
    journal = new SharedJournal(dir, key);
    journals.set(file, journal);
  }
  return journal.attach();
}

/** The journals of one state folder (DESIGN.md: `<userDir>/.bitrix24-offline-events/`). */
export class FileJournalStore implements JournalStore {
  constructor(readonly dir: string) {}

  open(key: JournalKey): JournalSession {
    return openJournal(this.dir, key);
  }
}

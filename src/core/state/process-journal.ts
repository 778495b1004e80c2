import { randomBytes } from "node:crypto";
import { fdatasync as fdatasyncCallback, promises as fs, write as writeCallback } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileInstanceRegistry, processInstanceId } from "./file-instance-registry";
import type { InstanceRegistry } from "./instance-registry";
import {
  type JournalFile,
  type JournalKey,
  type JournalLoadWarning,
  type JournalProcess,
  journalFiles,
  journalPrefix,
  parseJournal,
  readJournalFile,
  syncDirectory,
  writeFileDurably,
} from "./journal-files";
import type { JournalSession, JournalStore, PeerJournal } from "./state-seam";

export type { JournalKey, JournalLoadWarning, JournalProcess, JournalRecord } from "./journal-files";
export { journalKeyString } from "./journal-files";

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
 * The file is a log (journal-files.ts): a write appends a line and fdatasyncs it, two file-system calls on an
 * open descriptor instead of replacing the file (nine calls), which a drain pays once per batch before it may
 * emit. A crash mid-append leaves a torn last line, which the reader skips. The first write after start, and any
 * write that would let the log outgrow COMPACT_BYTES, replaces the file (atomically, durably) with the state alone.
 *
 * Before each get the journal also says that a get is in flight (`fetching`): the get's process id exists only
 * once the portal answered, so a crash in between leaves records held under a process id no journal names. The
 * mark tells the neighbours (other instances reading this file) not to take such records while we live. It is
 * appended WITHOUT fdatasync: it matters only while its writer lives, a process kill keeps it (the page cache is
 * the kernel's), and a power loss kills every instance of the machine, after which no live consumer can own
 * anything and the restart takes every orphan at once.
 *
 * Keyed by portal host + client id + auth_connector + error flag, NOT by node id (node ids change on copy and
 * import), and by instance (journal-files.ts): a consumer adopts its key's journals whose instance is dead.
 * Consumers of one key in one Node-RED process share one SharedJournal, each owning its own section; what no live
 * consumer has adopted yet is kept and written along, so nothing is dropped before someone re-selected it.
 */

// Defined in the seam (state-seam.ts), which every journal store answers with.
export type { PeerJournal } from "./state-seam";

function cloneProcess(p: JournalProcess): JournalProcess {
  return { ...p, pending: p.pending.map((r) => ({ ...r })) };
}

export class SharedJournal {
  readonly file: string;
  private readonly prefix: string;
  private readonly sections = new Map<symbol, JournalProcess[]>();
  private unclaimed: JournalProcess[] = [];
  /** Files of dead instances taken over: deleted once a durable write of ours carries their processes. */
  private claimed: string[] = [];
  /** Gets in flight (start times) by owner. */
  private readonly fetches = new Map<symbol, number[]>();
  private loaded = false;
  private chain: Promise<void> = Promise.resolve();
  private nextWrite: Promise<void> | undefined;
  private nextDurable = false;
  /** Set once the directory is known to exist: a drain writes per batch, a mkdir each time is wasted. */
  private dirReady = false;
  /** The log open for appending, once this process has written the file; closed when the last owner leaves. */
  private fd: fs.FileHandle | undefined;
  private fileBytes = 0;

  constructor(
    readonly dir: string,
    readonly key: JournalKey,
    readonly registry: InstanceRegistry = fileInstanceRegistry(dir),
  ) {
    this.prefix = journalPrefix(key);
    this.file = join(dir, `${this.prefix}@${registry.instanceId}.json`);
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

  /** Start of the oldest get in flight of any consumer of this key in this process. */
  fetchingSince(): number | undefined {
    let oldest: number | undefined;
    for (const starts of this.fetches.values())
      for (const t of starts) if (oldest === undefined || t < oldest) oldest = t;
    return oldest;
  }

  /** @internal */
  async adopt(owner: symbol): Promise<{ processes: JournalProcess[]; warning?: JournalLoadWarning }> {
    let warning: JournalLoadWarning | undefined;
    if (!this.loaded) {
      this.loaded = true;
      const read = await readJournalFile(this.file, this.key);
      warning = read.warning;
      this.addUnclaimed(read.processes);
    }
    warning = (await this.claimDead()) ?? warning;
    const adopted = this.unclaimed;
    this.unclaimed = [];
    const section = this.sections.get(owner);
    if (section) section.push(...adopted.map(cloneProcess));
    return { processes: adopted.map(cloneProcess), warning };
  }

  /**
   * Takes over the key's journals whose instance is dead (or that predate the registry): renamed to a name of ours
   * first, so a neighbour doing the same at the same moment gets nothing.
   */
  private async claimDead(): Promise<JournalLoadWarning | undefined> {
    let warning: JournalLoadWarning | undefined;
    for (const { file, owner } of await journalFiles(this.dir, this.key)) {
      if (file === this.file || (owner !== "" && (await this.registry.isLive(owner)))) continue;
      const mine = join(this.dir, `${this.prefix}@${this.registry.instanceId}+${randomBytes(4).toString("hex")}.json`);
      try {
        await fs.rename(file, mine);
      } catch {
        continue; // a neighbour took it first
      }
      const read = await readJournalFile(mine, this.key);
      warning = read.warning ?? warning;
      this.addUnclaimed(read.processes);
      if (!read.warning) this.claimed.push(mine);
    }
    return warning;
  }

  private addUnclaimed(processes: JournalProcess[]): void {
    const held = this.knownProcessIds();
    this.unclaimed.push(...processes.filter((p) => !held.has(p.processId)));
  }

  /** Whether a journal of the key waits to be taken over (its instance died, or it predates the registry). */
  async abandoned(): Promise<boolean> {
    for (const { file, owner } of await journalFiles(this.dir, this.key)) {
      if (file !== this.file && (owner === "" || !(await this.registry.isLive(owner)))) return true;
    }
    return false;
  }

  /** The journals of the key's other LIVE instances (a dead one's is left for claimDead). */
  async peers(): Promise<PeerJournal[]> {
    const out: PeerJournal[] = [];
    for (const { file, owner } of await journalFiles(this.dir, this.key)) {
      if (owner === "" || owner === this.registry.instanceId || !(await this.registry.isLive(owner))) continue;
      try {
        const state = parseJournal(await fs.readFile(file, "utf8"), this.key);
        out.push({
          instanceId: owner,
          processIds: new Set(state.processes.map((p) => p.processId)),
          fetching: state.fetching,
        });
      } catch {
        // gone or being replaced: its owner writes it again with its next batch
      }
    }
    return out;
  }

  /** @internal A get of `owner` is about to go out: resolves once the mark is written (not fdatasync'd). */
  beginFetch(owner: symbol, since: number): Promise<void> {
    const starts = this.fetches.get(owner) ?? [];
    starts.push(since);
    this.fetches.set(owner, starts);
    return this.requestWrite(false);
  }

  /** @internal The get of `since` answered or failed; the next write drops its mark (`write` asks for one now). */
  endFetch(owner: symbol, since: number, write: boolean): Promise<void> {
    const starts = this.fetches.get(owner);
    const i = starts?.indexOf(since) ?? -1;
    if (starts && i >= 0) starts.splice(i, 1);
    if (starts?.length === 0) this.fetches.delete(owner);
    return write ? this.requestWrite(false) : Promise.resolve();
  }

  /**
   * @internal Replaces the owner's section and resolves once a write containing it is on disk. The journal keeps
   * `processes` as they are (no copy: the consumer builds a fresh snapshot per save), so callers must not change
   * them afterwards.
   */
  save(owner: symbol, processes: JournalProcess[]): Promise<void> {
    if (!this.sections.has(owner)) return Promise.resolve();
    this.sections.set(owner, processes);
    return this.requestWrite(true);
  }

  /** @internal The owner's processes stay in the file (unclaimed) for whoever starts next. */
  release(owner: symbol): Promise<void> {
    const section = this.sections.get(owner);
    if (!section) return Promise.resolve();
    this.sections.delete(owner);
    this.fetches.delete(owner);
    this.unclaimed.push(...section);
    const written = this.requestWrite(true);
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

  /**
   * Writes are serialised; a request made while a write is queued (not yet started) joins it (durable if any
   * joiner needs it), so a burst of saves costs at most two writes. The snapshot is taken when the write starts,
   * so it contains every change made before.
   */
  private requestWrite(durable: boolean): Promise<void> {
    this.nextDurable ||= durable;
    if (this.nextWrite) return this.nextWrite;
    const write = this.chain.then(() => {
      this.nextWrite = undefined;
      const sync = this.nextDurable;
      this.nextDurable = false;
      return this.writeNow(sync);
    });
    this.nextWrite = write;
    this.chain = write.catch(() => undefined);
    return write;
  }

  private async writeNow(durable: boolean): Promise<void> {
    const processes = [...this.unclaimed, ...[...this.sections.values()].flat()];
    const claimed = durable ? this.claimed.splice(0) : [];
    if (!this.dirReady) {
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.dirReady = true;
    }
    try {
      await this.writeProcesses(processes, durable);
    } catch (err) {
      this.claimed.unshift(...claimed);
      // Someone removed the directory since (a user cleaning up, a test): make it again, once.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      await this.writeProcesses(processes, durable);
      this.claimed.splice(0, claimed.length);
    }
    // What the taken-over files held is now in ours, durably.
    for (const file of claimed) await fs.rm(file, { force: true });
  }

  private async writeProcesses(processes: JournalProcess[], durable: boolean): Promise<void> {
    const fetching = this.fetchingSince();
    if (processes.length === 0 && fetching === undefined) {
      await this.closeLog();
      await fs.rm(this.file, { force: true });
      await syncDirectory(this.dir);
      return;
    }
    const data: JournalFile = { version: 1, key: this.key, updatedAt: Date.now(), processes };
    if (fetching !== undefined) data.fetching = fetching;
    const line = Buffer.from(`${JSON.stringify(data)}\n`, "utf8");
    if (this.fd && this.fileBytes + line.length <= COMPACT_BYTES) {
      try {
        const { bytesWritten } = await writeFd(this.fd.fd, line, 0, line.length);
        if (bytesWritten !== line.length) throw new Error("short write");
        if (durable) await fdatasync(this.fd.fd);
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

  /** Takes over the processes no live consumer holds: on first use what the file lists, and dead instances' files. */
  adopt(): Promise<{ processes: JournalProcess[]; warning?: JournalLoadWarning }> {
    if (this.released) return Promise.resolve({ processes: [] });
    return this.journal.adopt(this.owner);
  }

  /** Replaces this consumer's processes (kept as given, not copied); resolves when they are durably on disk. */
  save(processes: JournalProcess[]): Promise<void> {
    if (this.released) return Promise.resolve();
    return this.journal.save(this.owner, processes);
  }

  /** Marks a get in flight (see SharedJournal); resolves once the neighbours can read the mark. */
  beginFetch(since: number): Promise<void> {
    if (this.released) return Promise.resolve();
    return this.journal.beginFetch(this.owner, since);
  }

  endFetch(since: number, write: boolean): Promise<void> {
    if (this.released) return Promise.resolve();
    return this.journal.endFetch(this.owner, since, write);
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

  fetchingSince(): number | undefined {
    return this.journal.fetchingSince();
  }

  peers(): Promise<PeerJournal[]> {
    return this.journal.peers();
  }

  abandoned(): Promise<boolean> {
    return this.journal.abandoned();
  }
}

const journals = new Map<string, SharedJournal>();

/** The file of a key's journal written by this process (or by `instanceId`). */
export function journalFileName(key: JournalKey, instanceId = processInstanceId()): string {
  return `${journalPrefix(key)}@${instanceId}.json`;
}

/** The process-wide journal of a key in a directory (one instance per file, shared by its consumers). */
export function openJournal(dir: string, key: JournalKey, registry?: InstanceRegistry): JournalHandle {
  const file = join(dir, journalFileName(key, (registry ?? fileInstanceRegistry(dir)).instanceId));
  let journal = journals.get(file);
  if (!journal) {
    journal = new SharedJournal(dir, key, registry);
    journals.set(file, journal);
  }
  return journal.attach();
}

/** The journals of one state folder (DESIGN.md: `<userDir>/.bitrix24-offline-events/`): the state seam's files. */
export class FileJournalStore implements JournalStore {
  constructor(readonly dir: string) {}

  open(key: JournalKey, registry: InstanceRegistry): JournalSession {
    return openJournal(this.dir, key, registry);
  }
}

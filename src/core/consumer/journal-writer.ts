import { Bitrix24Error } from "../rest/errors";
import type { InstanceRegistry } from "../state/instance-registry";
import { FileJournalStore } from "../state/process-journal";
import type { JournalKey, JournalProcess, JournalSession, JournalStore, PeerJournal } from "../state/state-seam";

/**
 * Journal persistence of one consumer: the process-id journal opened on first use, whole snapshots written
 * (fdatasync'd) before events are emitted, and a lazy write for acks (losing one is harmless: a re-select of
 * an acked record returns nothing).
 */

/** The consumer's journal store: the one it was given (the state seam), else files in its stateDir. */
export function journalStoreOf(o: { journals?: JournalStore; stateDir?: string }): JournalStore {
  if (o.journals) return o.journals;
  return new FileJournalStore(stateDirOf(o));
}

/** The consumer's state folder, for what has no store of its own given (journals, registry). */
export function stateDirOf(o: { stateDir?: string }): string {
  if (o.stateDir) return o.stateDir;
  throw new Bitrix24Error({
    code: "INVALID_CONFIG",
    description: "the consumer needs a journal store and an instance registry, or a stateDir for both",
  });
}

/** How long the journal may lag behind acks when no delivery writes it first. */
const ACK_PERSIST_DELAY_MS = 1000;

export interface JournalWriterHooks {
  /** The state to write: called at each write, so a write carries every change made before it. */
  snapshot(): JournalProcess[];
  /** A lazy write failed: nobody waits for it. */
  failed(err: unknown): void;
  /** A lazy write in flight, for close() to wait on. */
  track(write: Promise<unknown>): void;
}

export class JournalWriter {
  private handle: JournalSession | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: JournalStore,
    private readonly key: JournalKey,
    private readonly hooks: JournalWriterHooks,
    private readonly registry: InstanceRegistry,
  ) {}

  /**
   * Opens the journal (once) and takes over the processes no live consumer of the same key holds: on the first
   * call what our file lists, and every time the journals of instances that died.
   */
  adopt(): ReturnType<JournalSession["adopt"]> {
    this.handle ??= this.store.open(this.key, this.registry);
    return this.handle.adopt();
  }

  /**
   * A get that may hold records is about to go out: the mark is written first (see process-journal.ts), so that
   * neither a neighbour nor our own sweep takes its batch for an orphan before its process id is journaled.
   * Returns the mark's time, for endFetch.
   */
  async beginFetch(): Promise<number> {
    const since = Date.now();
    await this.handle?.beginFetch(since);
    return since;
  }

  /** The get answered (its process ids are in the ledger now) or failed. `write`: no save follows to drop the mark. */
  endFetch(since: number, write: boolean): void {
    const ended = this.handle?.endFetch(since, write);
    if (write && ended) this.hooks.track(ended.catch((err) => this.hooks.failed(err)));
  }

  /** Start of the oldest get in flight of this key's consumers in this process. */
  fetchingSince(): number | undefined {
    return this.handle?.fetchingSince();
  }

  peers(): Promise<PeerJournal[]> {
    return this.handle?.peers() ?? Promise.resolve([]);
  }

  /** A journal of a dead instance of the key is there to take over. */
  abandoned(): Promise<boolean> {
    return this.handle?.abandoned() ?? Promise.resolve(false);
  }

  get opened(): boolean {
    return this.handle !== undefined;
  }

  /** Process ids any consumer of this journal holds or held (the orphan sweep leaves those alone). */
  knownProcessIds(): Set<string> {
    return this.handle?.knownProcessIds() ?? new Set<string>();
  }

  /** Writes the state now; resolves once it is durably on disk. Carries what a pending lazy write would. */
  save(): Promise<void> {
    this.cancelLazy();
    return this.handle ? this.handle.save(this.hooks.snapshot()) : Promise.resolve();
  }

  /** Writes the state within ACK_PERSIST_DELAY_MS unless another write carries the changes first. */
  saveSoon(): void {
    if (!this.handle || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.hooks.track(this.save().catch((err) => this.hooks.failed(err)));
    }, ACK_PERSIST_DELAY_MS);
  }

  cancelLazy(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Last write, then detach: the processes stay in the file for whoever starts next with the same key. */
  async close(): Promise<void> {
    this.cancelLazy();
    const handle = this.handle;
    if (!handle) return;
    await handle.save(this.hooks.snapshot()).catch((err) => this.hooks.failed(err));
    await handle.release().catch(() => undefined);
  }
}

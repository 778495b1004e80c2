import type { InstanceRegistry, QueueKey } from "../state/instance-registry";
import type { JournalProcess } from "../state/process-journal";
import { type ConsumerApi, type ConsumerFlags, type ConsumerWarning, newTally, type Tally } from "./consumer-types";
import type { JournalWriter } from "./journal-writer";
import { OrphanSweep, type Owners } from "./orphan-sweep";

/**
 * What a consumer takes over from consumers that are gone (DESIGN.md, "Delivery semantics" and "Scale-out"): at
 * start, its journal's processes and the journals of dead instances of the same queue; then orphans, records held
 * under process ids no live consumer knows (orphan-sweep.ts says when one may be taken). It announces the consumer
 * in the instance registry and watches it every heartbeat: when a neighbour of the queue dies, its journal and the
 * batch it was fetching when it died are taken over within about a heartbeat, not after the age rule.
 */

export interface TakeoverSettings {
  queue: QueueKey;
  orphanSweep: boolean;
  /** The periodic sweep (the ack timeout): catches process ids lost in ways no death shows (a lost answer). */
  sweepEveryMs: number;
  sweepPages: number;
  orphanAgeMs: number;
  /** Consumers the registry cannot see may drain the queue (the get node's "other consumers" option). */
  externalConsumers: boolean;
}

export interface TakeoverHooks {
  /** Paused or closed: no sweep, no adoption now (the next beat after resume does it). */
  readonly flags: ConsumerFlags;
  /** Process ids this consumer holds (its ledger). */
  heldHere(): Iterable<string>;
  pendingOf(processId: string): number;
  /** Re-selects adopted journal processes (start-up recovery). */
  recoverJournal(processes: JournalProcess[], tally: Tally): Promise<void>;
  /** Re-selects orphans, treated as redelivered. */
  reselect(processIds: string[], tally: Tally, sizes: Map<string, number>): Promise<void>;
  warn(warning: ConsumerWarning): void;
  fail(err: unknown): void;
  track(work: Promise<unknown>): void;
}

const MAX_TIMER_MS = 2_147_483_647;

export class Takeover {
  private readonly orphans: OrphanSweep;
  private watchTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private liveNeighbours = new Set<string>();
  /** The last sweep left unknown process ids that a live consumer's get in flight may still name. */
  private deferred = false;
  private busy = false;
  private announced = false;

  constructor(
    api: Pick<ConsumerApi, "list">,
    private readonly journal: JournalWriter,
    private readonly registry: InstanceRegistry,
    private readonly s: TakeoverSettings,
    private readonly hooks: TakeoverHooks,
  ) {
    this.orphans = new OrphanSweep(api, {
      errorFlag: s.queue.error,
      authConnector: s.queue.authConnector,
      sweepPages: s.sweepPages,
      orphanAgeMs: s.orphanAgeMs,
      ageRule: s.externalConsumers,
    });
  }

  /** Announce, adopt the journals, sweep once, then watch the registry and sweep on a timer. */
  async start(tally: Tally): Promise<void> {
    try {
      await this.registry.announce(this.s.queue);
      this.announced = true;
      this.liveNeighbours = await this.neighbours();
    } catch (err) {
      // Without the registry we still drain; a neighbour may then take us for dead (a redelivery, never a loss).
      this.hooks.fail(err);
    }
    await this.adoptJournals(tally);
    if (this.s.orphanSweep) await this.sweep(tally).catch((err) => this.hooks.fail(err));
    if (this.hooks.flags.closed) return;
    this.watchTimer = setInterval(() => this.beat(), this.registry.heartbeatMs);
    if (this.s.orphanSweep) {
      this.sweepTimer = setInterval(
        () => this.run(() => this.sweep(newTally())),
        Math.min(this.s.sweepEveryMs, MAX_TIMER_MS),
      );
    }
  }

  stop(): void {
    if (this.watchTimer) clearInterval(this.watchTimer);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.watchTimer = undefined;
    this.sweepTimer = undefined;
  }

  /** Leaves the registry's list of the queue's consumers (the journal stays for whoever comes next). */
  async close(): Promise<void> {
    this.stop();
    if (this.announced) await this.registry.withdraw(this.s.queue).catch(() => undefined);
    this.announced = false;
  }

  /** One heartbeat: a neighbour died → its journal and its in-flight batch; a deferred orphan → look again. */
  private beat(): void {
    this.run(async () => {
      const live = await this.neighbours();
      // A death between two beats leaves no trace in `live`, but its journal (with its in-flight mark) stays.
      const died = [...this.liveNeighbours].some((id) => !live.has(id)) || (await this.journal.abandoned());
      this.liveNeighbours = live;
      if (died) await this.adoptJournals(newTally());
      if (this.s.orphanSweep && (died || this.deferred)) await this.sweep(newTally());
    });
  }

  /** One takeover step at a time, never while halted. */
  private run(step: () => Promise<void>): void {
    if (this.busy || this.hooks.flags.closed || this.hooks.flags.paused) return;
    this.busy = true;
    this.hooks.track(
      step()
        .catch((err) => this.hooks.fail(err))
        .finally(() => {
          this.busy = false;
        }),
    );
  }

  private async neighbours(): Promise<Set<string>> {
    return new Set((await this.registry.liveOthers(this.s.queue)).map((i) => i.instanceId));
  }

  private async adoptJournals(tally: Tally): Promise<void> {
    const { processes, warning } = await this.journal.adopt();
    if (warning) this.hooks.warn(warning);
    await this.hooks.recoverJournal(processes, tally);
  }

  /** Takes over the orphans the sweep found: re-selected with clear=0 and treated as redelivered. */
  private async sweep(tally: Tally): Promise<void> {
    if (this.hooks.flags.closed) return;
    const { adopt, deferred, sizes } = await this.orphans.findOrphans(() => this.owners(), tally);
    this.deferred = deferred;
    if (adopt.length === 0 || this.hooks.flags.closed) return;
    const before = new Map(adopt.map((pid) => [pid, this.hooks.pendingOf(pid)]));
    await this.hooks.reselect(adopt, tally, sizes);
    for (const pid of adopt) {
      const count = this.hooks.pendingOf(pid) - (before.get(pid) ?? 0);
      if (count > 0) this.hooks.warn({ code: "ORPHANS_ADOPTED", processId: pid, count });
    }
  }

  /**
   * Who holds what among the live consumers of the queue: gets in flight first, then process ids (a get that ends
   * in between has its process ids in the ledger and journal by then).
   */
  private async owners(): Promise<Owners> {
    let fetchingSince = this.journal.fetchingSince();
    const peers = await this.journal.peers();
    const known = this.journal.knownProcessIds();
    for (const id of this.hooks.heldHere()) known.add(id);
    for (const peer of peers) {
      for (const id of peer.processIds) known.add(id);
      if (peer.fetching !== undefined && (fetchingSince === undefined || peer.fetching < fetchingSince)) {
        fetchingSince = peer.fetching;
      }
    }
    return { known, fetchingSince };
  }
}

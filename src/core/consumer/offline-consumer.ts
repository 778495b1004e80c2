import { EventEmitter } from "node:events";
import type { AckedNotice } from "../acks/ack-queue";
import { BUILTIN_ENTITY_MAP } from "../entities/entity-reads";
import { EntityStage } from "../entities/entity-stage";
import { isExtendedModeRefusal } from "../queue/extended-mode";
import type { OfflineGetResult } from "../rest/types";
import { fileInstanceRegistry } from "../state/file-instance-registry";
import { ConsumerChanges } from "./consumer-changes";
import {
  asError,
  type ConsumerAcks,
  type ConsumerApi,
  type ConsumerFlags,
  type ConsumerMode,
  type ConsumerPhase,
  type ConsumerSettings,
  type ConsumerState,
  consumerSettings,
  type DeliveryGroup,
  type DrainOverrides,
  type DrainSummary,
  newTally,
  type OfflineConsumerEvents,
  type OfflineConsumerOptions,
  type Tally,
} from "./consumer-types";
import { DrainLoop, stoppedSummary } from "./drain-loop";
import { DrainRound } from "./drain-round";
import { HeldLedger, RedeliveryTimer } from "./held-ledger";
import { JournalWriter, journalStoreOf, stateDirOf } from "./journal-writer";
import { Recovery } from "./recovery";
import { StartUp } from "./start-up";
import { Takeover } from "./takeover";

/**
 * The get side of at-least-once delivery (DESIGN.md, "Delivery semantics"), without Node-RED. The get node is
 * thin glue around it; it is the composition of its parts:
 * - drain-round.ts: one round of a drain (ack window, acks riding along, backpressure, the request);
 * - held-ledger.ts: what each process id holds, delivery counts, the redelivery timer;
 * - drain-loop.ts: rounds until empty, triggers coalescing into one follow-up;
 * - recovery.ts: re-selects with clear=0 (start-up recovery, redelivery, orphan adoption, msg.processId);
 * - takeover.ts (+ orphan-sweep.ts): what dead consumers of the queue held, found through the instance registry;
 * - journal-writer.ts: the process-id journal, written before events are emitted (and a mark before each get);
 * - entity-stage.ts (with the entity option): the objects events name, read by the next round's request;
 * - consumer-changes.ts (with the changes option): what changed, attached before emitting, committed on ack.
 * - start-up.ts: the extended-mode check and the takeover before the first fetch, the fallback or refusal.
 * This class holds delivery (persist, then emit), redelivery timing, pause/resume and close.
 */

export { EXTENDED_MODE_FEATURE, isExtendedModeRefusal, NO_EXTENDED_MODE } from "../queue/extended-mode";
export type {
  ConsumerAcks,
  ConsumerApi,
  ConsumerMode,
  ConsumerPhase,
  ConsumerState,
  ConsumerWarning,
  Delivery,
  DeliveryGroup,
  DrainOverrides,
  DrainSummary,
  OfflineConsumerEvents,
  OfflineConsumerOptions,
} from "./consumer-types";

export class OfflineConsumer extends EventEmitter<OfflineConsumerEvents> {
  private readonly o: ConsumerSettings;
  private modeNow: ConsumerMode;
  private readonly errorFlag: 0 | 1;
  private readonly ledger: HeldLedger;
  private readonly redelivery: RedeliveryTimer;
  private readonly journal: JournalWriter;
  private readonly takeover: Takeover;
  private readonly recovery: Recovery;
  private readonly round: DrainRound;
  private readonly loop: DrainLoop;
  private readonly entities: EntityStage<DeliveryGroup> | undefined;
  /** The changes option's tracker and its hooks. */
  private readonly changes: ConsumerChanges | undefined;
  private readonly startUp: StartUp;
  private phase: ConsumerPhase = "idle";
  private paused = false;
  private closed = false;
  private resumeWanted = false;
  private dueWhilePaused = false;
  private readonly background = new Set<Promise<unknown>>();
  private readonly onAcked = (notice: AckedNotice) => this.handleAcked(notice);

  constructor(
    private readonly api: ConsumerApi,
    private readonly acks: ConsumerAcks | undefined,
    options: OfflineConsumerOptions,
  ) {
    super();
    const o = consumerSettings(options);
    this.o = o;
    this.modeNow = options.mode;
    const errorFlag: 0 | 1 = options.errorRecords ? 1 : 0;
    this.errorFlag = errorFlag;
    const authConnector = o.authConnector;
    this.ledger = new HeldLedger({
      errorFlag,
      authConnector,
      maxDeliveries: o.maxDeliveries,
      ackTimeoutMs: o.ackTimeoutMs,
    });
    this.redelivery = new RedeliveryTimer(this.ledger, () => this.onRedeliveryDue());
    const queue = { portalHost: o.portalHost, clientId: o.clientId, authConnector, error: errorFlag };
    const registry = options.registry ?? fileInstanceRegistry(stateDirOf(o));
    const fail = (err: unknown) => this.emit("failure", asError(err));
    this.journal = new JournalWriter(
      journalStoreOf(o),
      queue,
      { snapshot: () => this.ledger.snapshot(), failed: fail, track: (write) => this.track(write) },
      registry,
    );
    const entityMap = o.entityMap ?? BUILTIN_ENTITY_MAP;
    this.changes = o.changes
      ? new ConsumerChanges(o, api, acks, { mode: () => this.modeNow, track: (work) => this.track(work), fail })
      : undefined;
    this.entities = o.entity
      ? new EntityStage(
          entityMap,
          ({ method, error }) => this.emit("warning", { code: "ENTITY_READ_FAILED", method, error }),
          (method) => this.emit("entity-read-recovered", method),
          this.changes?.ridingReads(entityMap),
        )
      : undefined;
    const consumer = this;
    const flags: ConsumerFlags = {
      get mode() {
        return consumer.modeNow;
      },
      get closed() {
        return consumer.closed;
      },
      get paused() {
        return consumer.paused;
      },
    };
    this.recovery = new Recovery(
      api,
      this.ledger,
      { ...o, errorFlag },
      {
        flags,
        save: () => this.journal.save(),
        emit: (kind, group) => {
          if (kind === "deliver") this.round.noteEmitted();
          this.emit(kind, group);
        },
        markError: (target) => this.acks?.error(target),
        warn: (warning) => this.emit("warning", warning),
        fail,
        track: (work) => this.track(work),
        emitState: () => this.emitState(),
        failed: (err) => {
          if (isExtendedModeRefusal(err)) this.startUp.extendedModeMissing(err);
        },
        scheduleRedelivery: () => this.scheduleRedelivery(),
        changes: this.changes,
      },
      this.entities,
    );
    this.takeover = new Takeover(
      api,
      this.journal,
      registry,
      { ...o, queue, sweepEveryMs: o.ackTimeoutMs },
      {
        flags,
        heldHere: () => this.ledger.processIds(),
        pendingOf: (pid) => this.ledger.pendingOf(pid),
        recoverJournal: (processes, tally) => this.recovery.recoverJournal(processes, tally),
        reselect: (pids, tally, sizes) => this.recovery.reselectMany(pids, tally, sizes),
        warn: (warning) => this.emit("warning", warning),
        fail,
        track: (work) => this.track(work),
      },
    );
    this.round = new DrainRound(
      api,
      acks,
      this.ledger,
      { ...o, errorFlag },
      {
        flags,
        setPhase: (phase) => this.setPhase(phase),
        fetchStarting: () => this.journal.beginFetch(),
        fetchFailed: (since) => this.journal.endFetch(since, true),
        recordFetched: (results, since) => this.recordFetched(results, since),
        emit: (groups, tally) => this.emitFetched(groups, tally),
        extendedModeMissing: (cause) => this.startUp.extendedModeMissing(cause),
      },
      this.entities,
    );
    this.startUp = new StartUp(api, {
      mode: () => this.modeNow,
      allowAtMostOnce: o.allowAtMostOnce,
      fallBack: () => this.fallBackToAuto(),
      takeover: (tally) => this.takeover.start(tally),
    });
    this.loop = new DrainLoop(this.round, o, {
      flags,
      wantResume: () => {
        this.resumeWanted = true;
      },
      ensureStarted: (tally) => this.startUp.ensure(tally),
      setPhase: (phase) => this.setPhase(phase),
      drained: (summary) => this.emit("drained", summary),
    });
    if (this.modeNow === "ack") acks?.on("acked", this.onAcked);
  }

  /** The mode in effect: "auto" after an at-most-once fallback. */
  get mode(): ConsumerMode {
    return this.modeNow;
  }

  get state(): ConsumerState {
    return {
      phase: this.closed ? "closed" : this.paused ? "paused" : this.phase,
      mode: this.modeNow,
      pending: this.ledger.pending,
      maxInFlight: this.o.maxInFlight,
      unchanged: this.changes?.unchangedTotal ?? 0,
    };
  }

  /** Process ids held right now (ack mode). */
  processIds(): string[] {
    return this.ledger.processIds();
  }

  /**
   * Starts a drain (or a single fetch without `drain`). While a drain runs, triggers coalesce into ONE
   * follow-up drain, which uses the overrides of the latest trigger; every coalesced caller gets its summary.
   */
  trigger(overrides: DrainOverrides = {}): Promise<DrainSummary> {
    if (this.closed || this.paused) {
      if (this.paused) this.resumeWanted = true;
      return Promise.resolve(stoppedSummary());
    }
    return this.loop.trigger(overrides);
  }

  /** msg.processId: re-select that process's records (always clear=0) and emit them as redelivered. */
  async reselect(processId: string, overrides: DrainOverrides = {}): Promise<DrainSummary> {
    const startedAt = Date.now();
    const tally = newTally();
    if (this.closed) return stoppedSummary();
    await this.startUp.ensure(tally);
    const limit = Math.max(overrides.limit ?? this.o.limit, this.ledger.sizeOf(processId));
    const result = await this.api.get(this.recovery.params(processId, limit));
    tally.requests++;
    await this.recovery.deliver(processId, result.events, tally);
    return { ...tally, ms: Date.now() - startedAt, empty: false, stopped: false };
  }

  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.round.wakeCapacityWaiters();
    this.emitState();
  }

  /**
   * Resumes fetching. A trigger that arrived while paused starts a drain now, unless `fetchNow` is false
   * because the caller triggers one itself (msg.pause=false is also a trigger).
   */
  resume(fetchNow = true): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.emitState();
    if (this.dueWhilePaused) {
      this.dueWhilePaused = false;
      this.scheduleRedelivery(0);
    }
    const wanted = this.resumeWanted;
    this.resumeWanted = false;
    if (wanted && fetchNow) {
      this.trigger().catch((err) => this.emit("failure", asError(err)));
    }
  }

  /**
   * Stops fetching and timers, waits (bounded) for a request in flight, lets queued acks go out, and leaves
   * the journal on disk for whoever starts next with the same key.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.emitState();
    this.clearTimers();
    this.round.wakeCapacityWaiters();
    const inFlight = [this.loop.inFlight, ...this.background].filter((p): p is Promise<unknown> => p !== undefined);
    if (inFlight.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(inFlight),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.o.closeWaitMs);
        }),
      ]);
      clearTimeout(timer);
    }
    if (this.acks && this.modeNow === "ack" && this.acks.pending() > 0) {
      // Acks of the flow first: a record acked before the redeploy must not come back after it.
      await this.acks.flush().catch(() => undefined);
    }
    this.acks?.off("acked", this.onAcked);
    // Changes: the flushed acks' state commits (and their ledger updates) go before the journal and store close.
    if (this.changes) await Promise.allSettled([...this.background]);
    await this.journal.close();
    await this.changes?.close();
    await this.takeover.close();
    this.clearTimers(); // a late answer may have scheduled one
  }

  // ---------------------------------------------------------------------------------------------- delivery

  /**
   * New records: held and in the journal (fsync'd) before they are emitted. `since`: the get's in-flight mark, which
   * this write drops (its process ids are in the ledger now), or a write of its own when nothing came.
   */
  private async recordFetched(results: OfflineGetResult[], since?: number): Promise<DeliveryGroup[]> {
    if (results.length === 0) {
      if (since !== undefined) this.journal.endFetch(since, true);
      return [];
    }
    const now = Date.now();
    const groups: DeliveryGroup[] = [];
    for (const result of results) {
      const processId = this.modeNow === "ack" ? result.process_id : null;
      const deliveries = this.ledger.recordFetched(processId, result.events, now);
      groups.push({ processId, authConnector: this.o.authConnector, error: this.errorFlag, deliveries });
    }
    if (since !== undefined) this.journal.endFetch(since, false);
    if (this.modeNow === "ack") await this.journal.save();
    return groups;
  }

  private async emitFetched(fetched: DeliveryGroup[], tally: Tally): Promise<void> {
    if (fetched.length === 0) return;
    // Closing: the records are in the journal and come back after the restart; nobody would receive them now.
    if (this.closed && this.modeNow === "ack") return;
    const groups = await (this.changes?.compare(fetched, tally, true) ?? fetched);
    if (this.closed && this.modeNow === "ack") return;
    this.scheduleRedelivery();
    for (const group of groups) {
      tally.events += group.deliveries.length;
      tally.batches++;
      this.round.noteEmitted();
      this.emit("deliver", group);
    }
    this.emitState();
  }

  private handleAcked(notice: AckedNotice): void {
    // Changes: the state commit goes first, and applies the ack after it (consumer-changes.ts).
    if (this.changes?.acked(notice, () => this.applyAck(notice))) return;
    this.applyAck(notice);
  }

  private applyAck(notice: AckedNotice): void {
    if (!this.ledger.applyAck(notice)) return;
    // Losing this write is harmless (a re-select of an acked record returns nothing), so it need not be durable
    // at once: the next delivery's write carries it, or a timer writes it once the consumer is quiet. A snapshot
    // per ack call would be wasted in a drain, where the acks ride in with the next get whose delivery writes anyway.
    if (!this.closed) this.journal.saveSoon();
    this.round.wakeCapacityWaiters();
    this.emitState();
  }

  // ---------------------------------------------------------------------------------------------- start

  /** The portal cannot hold records and the user allowed at-most-once (start-up.ts decides). */
  private fallBackToAuto(): void {
    this.modeNow = "auto";
    this.acks?.off("acked", this.onAcked);
    this.emit("warning", { code: "AT_MOST_ONCE_FALLBACK" });
    this.emitState();
  }

  // ---------------------------------------------------------------------------------------------- timers

  private scheduleRedelivery(delayMs?: number): void {
    if (this.closed || this.modeNow !== "ack") return;
    this.redelivery.schedule(delayMs);
  }

  private onRedeliveryDue(): void {
    if (this.closed) return;
    if (this.paused) {
      this.dueWhilePaused = true;
      return;
    }
    this.recovery.redeliverDue(Math.min(this.o.ackTimeoutMs, 30_000));
  }

  private clearTimers(): void {
    this.redelivery.stop();
    this.takeover.stop();
    this.journal.cancelLazy();
  }

  // ---------------------------------------------------------------------------------------------- misc

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    p.finally(() => this.background.delete(p)).catch(() => undefined);
  }

  private setPhase(phase: ConsumerPhase): void {
    if (this.phase === phase) return;
    this.phase = phase;
    this.emitState();
  }

  private emitState(): void {
    this.emit("state", this.state);
  }
}

import { EventEmitter } from "node:events";
import type { AckedNotice } from "../acks/ack-queue";
import { BUILTIN_ENTITY_MAP } from "../entities/entity-reads";
import { EntityStage } from "../entities/entity-stage";
import { EXTENDED_MODE_FEATURE, extendedModeError, isExtendedModeRefusal } from "../queue/extended-mode";
import type { Bitrix24Error } from "../rest/errors";
import type { OfflineEvent, OfflineGetResult } from "../rest/types";
import { sendChunked } from "./consumer-batch";
import {
  asError,
  type ConsumerAcks,
  type ConsumerApi,
  type ConsumerMode,
  type ConsumerPhase,
  type ConsumerSettings,
  type ConsumerState,
  type Delivery,
  type DeliveryGroup,
  type DrainOverrides,
  type DrainSummary,
  newTally,
  type OfflineConsumerEvents,
  type OfflineConsumerOptions,
  type Tally,
} from "./consumer-types";
import { DrainRound } from "./drain-round";
import { HeldLedger, RedeliveryTimer } from "./held-ledger";
import { JournalWriter, journalStoreOf } from "./journal-writer";
import { OrphanSweep } from "./orphan-sweep";
import { Recovery } from "./recovery";

/**
 * The get side of at-least-once delivery (DESIGN.md, "Delivery semantics"), without Node-RED. The get node is
 * thin glue around it; it is the composition of its parts:
 * - drain-round.ts: one round of a drain (ack window, acks riding along, backpressure, the request);
 * - held-ledger.ts: what each process id holds, delivery counts, the redelivery timer;
 * - recovery.ts: re-selects with clear=0 (start-up recovery, redelivery, orphan adoption, msg.processId);
 * - orphan-sweep.ts: records held under process ids nobody here knows;
 * - journal-writer.ts: the process-id journal, written before events are emitted;
 * - entity-stage.ts (with the entity option): the objects events name, read by the next round's request.
 * This class holds the drain loop (triggers coalescing into one follow-up), start-up, delivery (persist, then
 * emit), pause/resume and close.
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

const MAX_BATCH = 50;

interface DrainRequest {
  overrides: DrainOverrides;
  promise: Promise<DrainSummary>;
  resolve: (s: DrainSummary) => void;
  reject: (e: Bitrix24Error) => void;
}

function deferredDrain(overrides: DrainOverrides): DrainRequest {
  let resolve!: (s: DrainSummary) => void;
  let reject!: (e: Bitrix24Error) => void;
  const promise = new Promise<DrainSummary>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { overrides, promise, resolve, reject };
}

function stoppedSummary(): DrainSummary {
  return { events: 0, batches: 0, ms: 0, requests: 0, redelivered: 0, empty: false, stopped: true };
}

export class OfflineConsumer extends EventEmitter<OfflineConsumerEvents> {
  private readonly o: ConsumerSettings;
  private modeNow: ConsumerMode;
  private readonly errorFlag: 0 | 1;
  private readonly ledger: HeldLedger;
  private readonly redelivery: RedeliveryTimer;
  private readonly journal: JournalWriter;
  private readonly sweep: OrphanSweep;
  private readonly recovery: Recovery;
  private readonly round: DrainRound;
  private readonly entities: EntityStage | undefined;
  private started: Promise<void> | undefined;
  /** Set once the portal refused ack mode for good; every later trigger is refused with a fresh error. */
  private refusal: { cause?: Bitrix24Error } | undefined;
  private running: Promise<void> | undefined;
  private followUp: DrainRequest | undefined;
  private phase: ConsumerPhase = "idle";
  private paused = false;
  private closed = false;
  private resumeWanted = false;
  private dueWhilePaused = false;
  private adopting = false;
  private readonly background = new Set<Promise<unknown>>();
  private readonly onAcked = (notice: AckedNotice) => this.handleAcked(notice);

  constructor(
    private readonly api: ConsumerApi,
    private readonly acks: ConsumerAcks | undefined,
    options: OfflineConsumerOptions,
  ) {
    super();
    const ackTimeoutMs = Math.max(1, options.ackTimeoutMs);
    const maxDeliveries = Math.max(1, Math.floor(options.maxDeliveries));
    const o: ConsumerSettings = {
      ...options,
      limit: Math.max(1, Math.floor(options.limit)),
      maxInFlight: Math.max(0, Math.floor(options.maxInFlight)),
      prefetch: Math.min(MAX_BATCH, Math.max(1, Math.floor(options.prefetch))),
      ackTimeoutMs,
      maxDeliveries,
      orphanAgeMs: options.orphanAgeMs ?? ackTimeoutMs * (maxDeliveries + 1),
      sweepPages: options.sweepPages ?? 20,
      ackWindowMs: options.ackWindowMs ?? 3,
      closeWaitMs: options.closeWaitMs ?? 5000,
      entity: options.entity === true,
    };
    this.o = o;
    this.modeNow = options.mode;
    const errorFlag: 0 | 1 = options.errorRecords ? 1 : 0;
    this.errorFlag = errorFlag;
    const authConnector = o.authConnector;
    this.ledger = new HeldLedger({ errorFlag, authConnector, maxDeliveries, ackTimeoutMs });
    this.redelivery = new RedeliveryTimer(this.ledger, () => this.onRedeliveryDue());
    this.journal = new JournalWriter(
      journalStoreOf(o),
      { portalHost: o.portalHost, clientId: o.clientId, authConnector, error: errorFlag },
      {
        snapshot: () => this.ledger.snapshot(),
        failed: (err) => this.emit("failure", asError(err)),
        track: (write) => this.track(write),
      },
    );
    this.sweep = new OrphanSweep(api, {
      errorFlag,
      authConnector,
      sweepPages: o.sweepPages,
      orphanAgeMs: o.orphanAgeMs,
    });
    this.recovery = new Recovery(
      api,
      this.ledger,
      { limit: o.limit, errorFlag, authConnector },
      {
        deliver: (processId, events, tally) => this.deliverReselected(processId, events, tally),
        failed: (err) => {
          if (isExtendedModeRefusal(err)) this.extendedModeMissing(err);
        },
        scheduleRedelivery: () => this.scheduleRedelivery(),
      },
    );
    this.entities = o.entity
      ? new EntityStage(
          o.entityMap ?? BUILTIN_ENTITY_MAP,
          ({ method, error }) => this.emit("warning", { code: "ENTITY_READ_FAILED", method, error }),
          (method) => this.emit("entity-read-recovered", method),
        )
      : undefined;
    const consumer = this;
    this.round = new DrainRound(
      api,
      acks,
      this.ledger,
      {
        prefetch: o.prefetch,
        maxInFlight: o.maxInFlight,
        ackWindowMs: o.ackWindowMs,
        errorFlag,
        authConnector,
        filter: o.filter,
        order: o.order,
      },
      {
        get mode() {
          return consumer.modeNow;
        },
        get closed() {
          return consumer.closed;
        },
        get halted() {
          return consumer.closed || consumer.paused;
        },
        setPhase: (phase) => this.setPhase(phase),
        recordFetched: (results) => this.recordFetched(results),
        emit: (groups, tally) => this.emitFetched(groups, tally),
        extendedModeMissing: (cause) => this.extendedModeMissing(cause),
      },
      this.entities,
    );
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
    if (this.running) {
      if (!this.followUp) this.followUp = deferredDrain(overrides);
      else this.followUp.overrides = overrides;
      return this.followUp.promise;
    }
    const request = deferredDrain(overrides);
    this.startDrain(request);
    return request.promise;
  }

  /** msg.processId: re-select that process's records (always clear=0) and emit them as redelivered. */
  async reselect(processId: string, overrides: DrainOverrides = {}): Promise<DrainSummary> {
    const startedAt = Date.now();
    const tally = newTally();
    if (this.closed) return stoppedSummary();
    await this.ensureStarted(tally);
    const limit = Math.max(overrides.limit ?? this.o.limit, this.ledger.sizeOf(processId));
    const result = await this.api.get(this.recovery.params(processId, limit));
    tally.requests++;
    await this.deliverReselected(processId, result.events, tally);
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
    const inFlight = [this.running, ...this.background].filter((p): p is Promise<unknown> => p !== undefined);
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
    await this.journal.close();
    this.clearTimers(); // a late answer may have scheduled one
  }

  // ---------------------------------------------------------------------------------------------- drain

  private startDrain(request: DrainRequest): void {
    const run = this.runDrain(request.overrides).then(request.resolve, (err) => request.reject(asError(err)));
    this.running = run.finally(() => {
      this.running = undefined;
      this.setPhase("idle");
      const next = this.followUp;
      this.followUp = undefined;
      if (next) {
        if (this.closed || this.paused) {
          if (this.paused) this.resumeWanted = true;
          next.resolve(stoppedSummary());
        } else {
          this.startDrain(next);
        }
      }
    });
  }

  /** Rounds until the queue is empty (or one round without `drain`), the consumer pauses or closes. */
  private async runDrain(overrides: DrainOverrides): Promise<DrainSummary> {
    const startedAt = Date.now();
    const tally = newTally();
    this.setPhase("fetching");
    await this.ensureStarted(tally);
    const limit = Math.max(1, Math.floor(overrides.limit ?? this.o.limit));
    let empty = false;
    let stopped = false;
    for (;;) {
      if (this.closed || this.paused) {
        stopped = true;
        break;
      }
      const round = await this.round.run(limit, overrides, tally);
      if (round === "stopped") {
        stopped = true;
        break;
      }
      if (round === "wait") continue;
      if (!round.full) {
        empty = true;
        break;
      }
      if (!this.o.drain) break;
    }
    // Events still waiting for their objects go out now, with a request that only reads (nothing more fetched).
    if (this.round.waitingForObjects) await this.round.run(limit, overrides, tally, false);
    const summary: DrainSummary = { ...tally, ms: Date.now() - startedAt, empty, stopped };
    if (empty) this.emit("drained", summary);
    return summary;
  }

  // ---------------------------------------------------------------------------------------------- delivery

  /** New records: held and in the journal (fsync'd) before they are emitted. */
  private async recordFetched(results: OfflineGetResult[]): Promise<DeliveryGroup[]> {
    if (results.length === 0) return [];
    const now = Date.now();
    const groups: DeliveryGroup[] = [];
    for (const result of results) {
      const processId = this.modeNow === "ack" ? result.process_id : null;
      const deliveries = this.ledger.recordFetched(processId, result.events, now);
      groups.push({ processId, authConnector: this.o.authConnector, error: this.errorFlag, deliveries });
    }
    if (this.modeNow === "ack") await this.journal.save();
    return groups;
  }

  private emitFetched(groups: DeliveryGroup[], tally: Tally): void {
    if (groups.length === 0) return;
    // Closing: the records are in the journal and come back after the restart; nobody would receive them now.
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

  /**
   * Records of a process re-selected with clear=0 (recovery, redelivery, orphan adoption, msg.processId): delivery
   * counts go up and are persisted BEFORE emitting; exhausted records are marked as errors (error=0) or leave on
   * the dead-letter output (error=1, which the portal cannot mark again).
   */
  private async deliverReselected(processId: string, events: OfflineEvent[], tally: Tally): Promise<void> {
    const ackMode = this.modeNow === "ack";
    if (events.length === 0) {
      this.ledger.dropProcess(processId);
      if (ackMode) await this.journal.save();
      this.emitState();
      return;
    }
    const { redeliver, dead, exhausted } = this.ledger.recordReselected(processId, events, Date.now(), ackMode);
    if (ackMode) await this.journal.save();
    if (this.closed && ackMode) return;
    const group = (deliveries: Delivery[]): DeliveryGroup => ({
      processId,
      authConnector: this.o.authConnector,
      error: this.errorFlag,
      deliveries,
    });
    if (this.entities && redeliver.length + dead.length > 0) {
      // Read again: the object may have changed since the first delivery. No drain request to ride with here.
      await this.entities.readNow([group(redeliver), group(dead)], async (commands) => {
        const outcome = await sendChunked(this.api.client, commands);
        tally.requests += outcome.requests;
        return outcome;
      });
      if (this.closed && ackMode) return;
    }
    this.scheduleRedelivery();
    if (redeliver.length > 0) {
      tally.events += redeliver.length;
      tally.redelivered += redeliver.length;
      tally.batches++;
      this.round.noteEmitted();
      this.emit("deliver", group(redeliver));
    }
    if (dead.length > 0) this.emit("dead-letter", group(dead));
    if (exhausted.length > 0) this.markExhausted(processId, exhausted);
    this.emitState();
  }

  private markExhausted(processId: string, messageIds: string[]): void {
    this.emit("warning", { code: "MARKED_AS_ERROR", processId, messageIds });
    if (!this.acks) return;
    const target = { processId, messageIds, ...(this.o.authConnector ? { authConnector: this.o.authConnector } : {}) };
    this.track(
      this.acks.error(target).catch((err) => {
        this.ledger.unmark(processId, messageIds); // the next ack timeout tries again
        this.emit("failure", asError(err));
      }),
    );
  }

  private handleAcked(notice: AckedNotice): void {
    if (!this.ledger.applyAck(notice)) return;
    // Losing this write is harmless (a re-select of an acked record returns nothing), so it need not be durable
    // at once: the next delivery's write carries it, or a timer writes it once the consumer is quiet. A snapshot
    // per ack call would be wasted in a drain, where the acks ride in with the next get whose delivery writes anyway.
    if (!this.closed) this.journal.saveSoon();
    this.round.wakeCapacityWaiters();
    this.emitState();
  }

  // ---------------------------------------------------------------------------------------------- start

  private ensureStarted(tally: Tally): Promise<void> {
    // A fresh error each time: callers that report a failure once per error object still see every refusal.
    if (this.refusal) return Promise.reject(extendedModeError(this.refusal.cause));
    if (!this.started) {
      this.started = this.start(tally).catch((err) => {
        this.started = undefined; // a failed start (network) is tried again by the next trigger
        throw err;
      });
    }
    return this.started;
  }

  /** Ack mode only: the portal's extended mode, then the journal's processes, then the orphan sweep. */
  private async start(tally: Tally): Promise<void> {
    if (this.modeNow !== "ack") return;
    let extended: boolean | undefined;
    try {
      extended = await this.api.feature(EXTENDED_MODE_FEATURE);
      tally.requests++;
    } catch {
      // Not conclusive (old portal, no feature.get): the license error of the first get tells.
    }
    if (extended === false) {
      this.extendedModeMissing();
      if (this.modeNow !== "ack") return;
    }
    const { processes, warning } = await this.journal.adopt();
    if (warning) this.emit("warning", warning);
    await this.recovery.recoverJournal(processes, tally);
    this.journal.watch(() => this.adoptLate());
    if (this.o.orphanSweep) {
      await this.sweepOrphans(tally).catch((err) => this.emit("failure", asError(err)));
      if (!this.closed) {
        this.sweep.repeat(this.o.ackTimeoutMs, () => {
          if (this.paused || this.closed) return;
          this.track(this.sweepOrphans(newTally()).catch((err) => this.emit("failure", asError(err))));
        });
      }
    }
  }

  /**
   * Processes a dead consumer held became free (a shared store's lease ran out): taken over and re-selected now,
   * with their delivery counts, instead of after the orphan sweep's age rule. One take-over at a time.
   */
  private adoptLate(): void {
    if (this.closed || this.paused || this.modeNow !== "ack" || this.adopting) return;
    this.adopting = true;
    this.track(
      this.journal
        .adopt()
        .then(({ processes }) => this.recovery.recoverJournal(processes, newTally()))
        .catch((err) => this.emit("failure", asError(err)))
        .finally(() => {
          this.adopting = false;
          this.emitState();
        }),
    );
  }

  /** Fails the start (ack mode refused) or switches to auto mode when the user allowed at-most-once. */
  private extendedModeMissing(cause?: Bitrix24Error): void {
    if (this.o.allowAtMostOnce) {
      if (this.modeNow === "ack") {
        this.modeNow = "auto";
        this.acks?.off("acked", this.onAcked);
        this.emit("warning", { code: "AT_MOST_ONCE_FALLBACK" });
        this.emitState();
      }
      return;
    }
    this.refusal = { cause };
    throw extendedModeError(cause);
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
    const due = this.ledger.takeDue(Date.now());
    if (due.length === 0) {
      this.scheduleRedelivery();
      return;
    }
    this.track(
      this.recovery
        .reselectMany(
          due.map((p) => p.processId),
          newTally(),
        )
        .catch((err) => {
          // Try again after a while; the records stay held meanwhile.
          this.ledger.postpone(due, Date.now() + Math.min(this.o.ackTimeoutMs, 30_000));
          this.emit("failure", asError(err));
        })
        .finally(() => {
          this.ledger.finishDue(due);
          this.scheduleRedelivery();
          this.emitState();
        }),
    );
  }

  /** Takes over the orphans the sweep found: re-selected with clear=0 and treated as redelivered. */
  private async sweepOrphans(tally: Tally): Promise<void> {
    if (this.modeNow !== "ack" || this.closed) return;
    const adopt = await this.sweep.findOrphans(() => {
      const known = this.journal.knownProcessIds();
      for (const id of this.ledger.processIds()) known.add(id);
      return known;
    }, tally);
    if (adopt.length === 0 || this.closed) return;
    const before = new Map(adopt.map((pid) => [pid, this.ledger.pendingOf(pid)]));
    await this.recovery.reselectMany(adopt, tally);
    for (const pid of adopt) {
      const count = this.ledger.pendingOf(pid) - (before.get(pid) ?? 0);
      if (count > 0) this.emit("warning", { code: "ORPHANS_ADOPTED", processId: pid, count });
    }
  }

  private clearTimers(): void {
    this.redelivery.stop();
    this.sweep.stop();
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

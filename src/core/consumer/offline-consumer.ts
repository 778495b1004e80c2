import { EventEmitter } from "node:events";
import type { AckedNotice } from "../acks/ack-queue";
import { ChangeTracker } from "../changes/change-tracker";
import { parseWatchFields } from "../changes/compare";
import { FieldLabels } from "../changes/field-labels";
import { BUILTIN_ENTITY_MAP, type ObjectRef, objectRefOf } from "../entities/entity-reads";
import { EntityStage } from "../entities/entity-stage";
import { EXTENDED_MODE_FEATURE, extendedModeError, isExtendedModeRefusal } from "../queue/extended-mode";
import type { Bitrix24Error } from "../rest/errors";
import type { OfflineGetResult } from "../rest/types";
import { fileInstanceRegistry } from "../state/file-instance-registry";
import { LmdbSnapshotStores } from "../state/lmdb-snapshot-store";
import { sendChunked } from "./consumer-batch";
import {
  asError,
  type ConsumerAcks,
  type ConsumerApi,
  type ConsumerFlags,
  type ConsumerMode,
  type ConsumerPhase,
  type ConsumerSettings,
  type ConsumerState,
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
 * - entity-stage.ts (with the entity option): the objects events name, read by the next round's request.
 * This class holds start-up, delivery (persist, then emit), redelivery timing, pause/resume and close.
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
  /** Changes option: the tracker, once its store is open. */
  private readonly tracker: Promise<ChangeTracker> | undefined;
  private readonly labels: FieldLabels | undefined;
  private unchangedTotal = 0;
  private started: Promise<void> | undefined;
  /** Set once the portal refused ack mode for good; every later trigger is refused with a fresh error. */
  private refusal: { cause?: Bitrix24Error } | undefined;
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
    const ackTimeoutMs = Math.max(1, options.ackTimeoutMs);
    const maxDeliveries = Math.max(1, Math.floor(options.maxDeliveries));
    const o: ConsumerSettings = {
      ...options,
      limit: Math.max(1, Math.floor(options.limit)),
      maxInFlight: Math.max(0, Math.floor(options.maxInFlight)),
      prefetch: Math.min(MAX_BATCH, Math.max(1, Math.floor(options.prefetch))),
      ackTimeoutMs,
      maxDeliveries,
      externalConsumers: options.externalConsumers === true,
      orphanAgeMs: options.orphanAgeMs ?? ackTimeoutMs * (maxDeliveries + 1),
      sweepPages: options.sweepPages ?? 20,
      ackWindowMs: options.ackWindowMs ?? 3,
      closeWaitMs: options.closeWaitMs ?? 5000,
      changes: options.changes === true,
      watchFields: parseWatchFields(options.watchFields),
      // What changed is found by comparing objects: the changes option reads them.
      entity: options.entity === true || options.changes === true,
    };
    this.o = o;
    this.modeNow = options.mode;
    const errorFlag: 0 | 1 = options.errorRecords ? 1 : 0;
    this.errorFlag = errorFlag;
    const authConnector = o.authConnector;
    this.ledger = new HeldLedger({ errorFlag, authConnector, maxDeliveries, ackTimeoutMs });
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
    // Changes: the field metadata for labels rides in the entity stage's requests, like the objects.
    this.labels = o.changes ? new FieldLabels(o.watchFields) : undefined;
    const labels = this.labels;
    this.entities = o.entity
      ? new EntityStage(
          entityMap,
          ({ method, error }) => this.emit("warning", { code: "ENTITY_READ_FAILED", method, error }),
          (method) => this.emit("entity-read-recovered", method),
          labels && {
            commands: (events) =>
              labels.preload(
                events.map((e) => objectRefOf(e, entityMap)).filter((r): r is ObjectRef => r !== undefined),
              ),
            absorb: (commands, outcome) => labels.absorb(commands, outcome),
          },
        )
      : undefined;
    this.tracker = o.changes ? this.openTracker() : undefined;
    // Without a listener an open failure would be unhandled until the first drain reports it.
    this.tracker?.catch(() => undefined);
    const tracker = this.tracker;
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
          if (isExtendedModeRefusal(err)) this.extendedModeMissing(err);
        },
        scheduleRedelivery: () => this.scheduleRedelivery(),
        changes: tracker && {
          reselected: async (processId, events) => (await tracker).reselected(processId, events),
          compare: (groups, tally, drop) => this.withChanges(groups, tally, drop),
        },
      },
      this.entities,
    );
    this.takeover = new Takeover(
      api,
      this.journal,
      registry,
      { ...o, queue, sweepEveryMs: ackTimeoutMs },
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
        extendedModeMissing: (cause) => this.extendedModeMissing(cause),
      },
      this.entities,
    );
    this.loop = new DrainLoop(this.round, o, {
      flags,
      wantResume: () => {
        this.resumeWanted = true;
      },
      ensureStarted: (tally) => this.ensureStarted(tally),
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
      unchanged: this.unchangedTotal,
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
    await this.ensureStarted(tally);
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
    if (this.tracker) await Promise.allSettled([...this.background]);
    await this.journal.close();
    await this.tracker?.then((t) => t.close()).catch(() => undefined);
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
    const groups = await this.withChanges(fetched, tally, true);
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
    if (this.tracker && (notice.authConnector ?? "") === this.o.authConnector) {
      // The state commit first, then the ledger (and so the journal) forgets the records: after a crash in between,
      // the journal still names the process, and its re-select shows the records gone (change-tracker.ts).
      this.track(
        this.tracker
          .then((t) => t.acked(notice))
          .catch((err) => this.emit("failure", asError(err)))
          .finally(() => this.applyAck(notice)),
      );
      return;
    }
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

  /** Ack mode only: the portal's extended mode, then what dead consumers held (journals, orphans). */
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
    await this.takeover.start(tally);
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
    this.recovery.redeliverDue(Math.min(this.o.ackTimeoutMs, 30_000));
  }

  private clearTimers(): void {
    this.redelivery.stop();
    this.takeover.stop();
    this.journal.cancelLazy();
  }

  // ---------------------------------------------------------------------------------------------- changes

  private async openTracker(): Promise<ChangeTracker> {
    const o = this.o;
    // One history per queue and watch list: two nodes watching different fields must not advance each other.
    const ns = [o.portalHost, o.clientId, o.authConnector, o.watchFields.join(",")].join("\u0000");
    const store = await (o.snapshots ?? new LmdbSnapshotStores(stateDirOf(o))).open(ns);
    return new ChangeTracker({
      store,
      map: o.entityMap ?? BUILTIN_ENTITY_MAP,
      watch: o.watchFields,
      labels: this.labels,
      send: (commands) => sendChunked(this.api.client, commands),
    });
  }

  /**
   * The changes option: each event gets what changed (durable before it is emitted); with `drop`, events with no
   * watched change are acked here (ack mode) instead of emitted. Their ack commits their state like any other.
   */
  private async withChanges(groups: DeliveryGroup[], tally: Tally, drop: boolean): Promise<DeliveryGroup[]> {
    if (!this.tracker) return groups;
    const tracker = await this.tracker;
    await tracker.prepare(groups, this.modeNow);
    if (!drop) return groups;
    const out: DeliveryGroup[] = [];
    for (const g of groups) {
      const unchanged = g.deliveries.filter((d) => d.changes?.unchanged);
      if (unchanged.length === 0) {
        out.push(g);
        continue;
      }
      const ack = this.modeNow === "ack" && g.processId !== null;
      if (ack && !this.acks) {
        out.push(g); // nobody here could ack them: the flow must
        continue;
      }
      if (ack && this.acks && g.processId !== null) {
        const target = {
          processId: g.processId,
          ids: unchanged.map((d) => d.id),
          ...(g.authConnector ? { authConnector: g.authConnector } : {}),
        };
        // A failed ack leaves them held: the ack timeout redelivers them, compared again.
        this.track(this.acks.clear(target).catch((err) => this.emit("failure", asError(err))));
      }
      tally.unchanged += unchanged.length;
      this.unchangedTotal += unchanged.length;
      const rest = g.deliveries.filter((d) => !d.changes?.unchanged);
      if (rest.length > 0) out.push({ ...g, deliveries: rest });
    }
    return out;
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

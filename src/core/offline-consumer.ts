import { EventEmitter } from "node:events";
import type { AckedNotice, AckQueue } from "./ack-queue";
import type { BatchOutcome } from "./client";
import { Bitrix24Error } from "./errors";
import { type OfflineEventsApi, parseGetResult } from "./offline-api";
import { type JournalHandle, type JournalLoadWarning, type JournalProcess, openJournal } from "./process-journal";
import type {
  BatchCommand,
  OfflineEvent,
  OfflineFilter,
  OfflineGetParams,
  OfflineGetResult,
  OfflineListRecord,
  OfflineOrder,
} from "./types";

/**
 * The get side of at-least-once delivery (DESIGN.md, "Delivery semantics"), without Node-RED: fetch, drain until
 * empty, backpressure, acks riding along with the next get, ack timeout and redelivery, the process-id journal,
 * recovery on start and the orphan sweep. The get node is thin glue around it.
 */

export type ConsumerMode = "ack" | "auto";

export interface OfflineConsumerOptions {
  /** Portal host and application: with the connector and error flag, the journal's key. */
  portalHost: string;
  clientId: string;
  /** Directory for the journal (the portal's stateDir). */
  stateDir: string;
  mode: ConsumerMode;
  limit: number;
  filter?: OfflineFilter;
  order?: OfflineOrder;
  /** Fetch records marked as errors (error=1) instead of unprocessed ones. */
  errorRecords: boolean;
  authConnector: string;
  /** Keep fetching while full batches come. */
  drain: boolean;
  /** Unacknowledged events at which fetching stops (ack mode); 0 = no limit. */
  maxInFlight: number;
  ackTimeoutMs: number;
  maxDeliveries: number;
  /** event.offline.get calls per batch request. */
  prefetch: number;
  /** Without the portal's extended mode, fall back to auto mode (at-most-once) instead of refusing. */
  allowAtMostOnce: boolean;
  orphanSweep: boolean;
  /**
   * How long a record must be seen held under a process id nobody here knows before the sweep takes it over.
   * Default ackTimeout × (maxDeliveries + 1): longer than a live consumer elsewhere (another Node-RED instance
   * on the same queue) keeps a record without acking it or marking it as an error.
   */
  orphanAgeMs?: number;
  /** Pages of event.offline.list one sweep reads at most (50 records each). Default 20. */
  sweepPages?: number;
  /**
   * After emitting, how long the consumer waits for the flow's acks so they ride along with the next get
   * (one request instead of two). Shorter than the ack queue's own flush delay (5 ms). Default 3.
   */
  ackWindowMs?: number;
  /** How long close() waits for a request in flight. Default 5000. */
  closeWaitMs?: number;
}

/** Per-trigger overrides (msg.limit, msg.filter, msg.order). */
export interface DrainOverrides {
  limit?: number;
  filter?: OfflineFilter;
  order?: OfflineOrder;
}

export interface Delivery {
  event: OfflineEvent;
  id: number;
  deliveryCount: number;
  redelivered: boolean;
}

/** Events of one process, emitted together (one get, one re-select). */
export interface DeliveryGroup {
  processId: string | null;
  authConnector: string;
  error: 0 | 1;
  deliveries: Delivery[];
}

export interface DrainSummary {
  /** Events emitted (new and redelivered). */
  events: number;
  /** Gets that returned events. */
  batches: number;
  ms: number;
  /** HTTP requests sent (a batch request counts once). */
  requests: number;
  /** Of `events`, how many were redeliveries (recovery, re-select). */
  redelivered: number;
  /** True when the last get found fewer records than it asked for: the queue (as filtered) is empty. */
  empty: boolean;
  /** True when the drain did not run or stopped early because the consumer was paused or closed. */
  stopped: boolean;
}

export type ConsumerPhase = "idle" | "fetching" | "waiting" | "paused" | "closed";

export interface ConsumerState {
  phase: ConsumerPhase;
  mode: ConsumerMode;
  /** Unacknowledged events (ack mode). */
  pending: number;
  maxInFlight: number;
}

export type ConsumerWarning =
  | { code: "AT_MOST_ONCE_FALLBACK" }
  | { code: "MARKED_AS_ERROR"; processId: string; messageIds: string[] }
  | { code: "ORPHANS_ADOPTED"; processId: string; count: number }
  | ({ code: "JOURNAL_UNREADABLE" } & JournalLoadWarning);

export interface OfflineConsumerEvents {
  deliver: [DeliveryGroup];
  "dead-letter": [DeliveryGroup];
  drained: [DrainSummary];
  state: [ConsumerState];
  /** A failure outside any trigger (redelivery, sweep, journal, marking): nobody else will report it. */
  failure: [Bitrix24Error];
  warning: [ConsumerWarning];
}

export type ConsumerApi = Pick<OfflineEventsApi, "client" | "get" | "getCommand" | "feature" | "list">;
export type ConsumerAcks = Pick<AckQueue, "take" | "error" | "pending" | "flush" | "on" | "off">;

export const EXTENDED_MODE_FEATURE = "rest_offline_extended";
export const NO_EXTENDED_MODE =
  "this portal's plan lacks extended offline mode (rest_offline_extended): ack mode unavailable";
const MAX_BATCH = 50;
const OFFLINE_CLEAR = "event.offline.clear";
const MAX_TIMER_MS = 2_147_483_647;
/** How long the journal may lag behind acks when no delivery writes it first (see handleAcked). */
const ACK_PERSIST_DELAY_MS = 1000;

/** The portal refused clear=0 for its plan (WRONG_LICENSE "…extended offline events handling"). */
export function isExtendedModeRefusal(err: unknown): boolean {
  if (!(err instanceof Bitrix24Error)) return false;
  if (err.code !== "WRONG_LICENSE" && err.code !== "ERROR_LICENSE") return false;
  // The same code refuses auth_connector on plans without source keys: that is another problem.
  return !/auth_connector/i.test(err.description);
}

function extendedModeError(cause?: Bitrix24Error): Bitrix24Error {
  return new Bitrix24Error({
    code: cause?.code ?? "WRONG_LICENSE",
    status: cause?.status ?? 403,
    method: "event.offline.get",
    description: NO_EXTENDED_MODE,
    retryable: false,
  });
}

function asError(err: unknown): Bitrix24Error {
  if (err instanceof Bitrix24Error) return err;
  return new Bitrix24Error({
    code: "INTERNAL_ERROR",
    description: err instanceof Error ? err.message : String(err),
    retryable: false,
  });
}

/** A batch command's answer as a get result, or the failure it stands for. */
function getAnswer(outcome: BatchOutcome, key: string): { result?: OfflineGetResult; error?: Bitrix24Error } {
  const error = outcome.errors[key];
  if (error) return { error };
  try {
    return { result: parseGetResult(outcome.result[key]) };
  } catch (err) {
    return { error: asError(err) };
  }
}

interface PendingRecord {
  id: number;
  messageId: string;
  deliveryCount: number;
  /** event.offline.error sent for it; waiting for the "acked" notice. */
  marking?: boolean;
}

interface HeldProcess {
  processId: string;
  size: number;
  deliveredAt: number;
  pending: Map<number, PendingRecord>;
  /** A re-select of this process is in flight. */
  busy?: boolean;
}

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

interface Tally {
  events: number;
  batches: number;
  requests: number;
  redelivered: number;
}

function newTally(): Tally {
  return { events: 0, batches: 0, requests: 0, redelivered: 0 };
}

/** Which of our pending records a set of taken ack commands will clear. */
function coveredBy(commands: Record<string, BatchCommand>, held: Map<string, HeldProcess>, connector: string): number {
  let covered = 0;
  for (const command of Object.values(commands)) {
    if (command.method !== OFFLINE_CLEAR || !command.params) continue;
    const p = command.params as { process_id?: unknown; id?: unknown; message_id?: unknown; auth_connector?: unknown };
    if (String(p.auth_connector ?? "") !== connector) continue;
    const proc = held.get(String(p.process_id));
    if (!proc) continue;
    if (Array.isArray(p.id)) {
      for (const id of p.id) if (proc.pending.has(Number(id))) covered++;
    } else if (Array.isArray(p.message_id)) {
      const ids = new Set(p.message_id.map(String));
      for (const r of proc.pending.values()) if (ids.has(r.messageId)) covered++;
    } else {
      covered += proc.pending.size;
    }
  }
  return covered;
}

export class OfflineConsumer extends EventEmitter<OfflineConsumerEvents> {
  private readonly o: Required<Omit<OfflineConsumerOptions, "filter" | "order">> &
    Pick<OfflineConsumerOptions, "filter" | "order">;
  private modeNow: ConsumerMode;
  private readonly errorFlag: 0 | 1;
  private readonly held = new Map<string, HeldProcess>();
  private pendingCount = 0;
  private journal: JournalHandle | undefined;
  private started: Promise<void> | undefined;
  /** Set once the portal refused ack mode for good; every later trigger is refused with a fresh error. */
  private refusal: { cause?: Bitrix24Error } | undefined;
  private running: Promise<void> | undefined;
  private followUp: DrainRequest | undefined;
  private phase: ConsumerPhase = "idle";
  private paused = false;
  private closed = false;
  private resumeWanted = false;
  private capacityWaiters: Array<() => void> = [];
  private redeliveryTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  private dueWhilePaused = false;
  private readonly orphanSeen = new Map<string, number>();
  private readonly background = new Set<Promise<unknown>>();
  private readonly onAcked = (notice: AckedNotice) => this.handleAcked(notice);
  private emittedSinceLastGet = false;

  constructor(
    private readonly api: ConsumerApi,
    private readonly acks: ConsumerAcks | undefined,
    options: OfflineConsumerOptions,
  ) {
    super();
    const ackTimeoutMs = Math.max(1, options.ackTimeoutMs);
    const maxDeliveries = Math.max(1, Math.floor(options.maxDeliveries));
    this.o = {
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
    };
    this.modeNow = options.mode;
    this.errorFlag = options.errorRecords ? 1 : 0;
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
      pending: this.pendingCount,
      maxInFlight: this.o.maxInFlight,
    };
  }

  /** Process ids held right now (ack mode). */
  processIds(): string[] {
    return [...this.held.keys()];
  }

  /**
   * Starts a drain (or a single fetch without `drain`). While a drain runs, triggers coalesce into ONE
   * follow-up drain, which uses the overrides of the latest trigger; every coalesced caller gets its summary.
   */
  trigger(overrides: DrainOverrides = {}): Promise<DrainSummary> {
    if (this.closed || this.paused) {
      if (this.paused) this.resumeWanted = true;
      return Promise.resolve(this.stoppedSummary());
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
    if (this.closed) return this.stoppedSummary();
    await this.ensureStarted(tally);
    const limit = Math.max(overrides.limit ?? this.o.limit, this.held.get(processId)?.size ?? 0);
    const result = await this.api.get(this.reselectParams(processId, limit));
    tally.requests++;
    await this.deliverReselected(processId, result.events, tally);
    return { ...tally, ms: Date.now() - startedAt, empty: false, stopped: false };
  }

  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.wakeCapacityWaiters();
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
    this.wakeCapacityWaiters();
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
    const journal = this.journal;
    if (journal) {
      await journal.save(this.journalSnapshot()).catch((err) => this.emit("failure", asError(err)));
      await journal.release().catch(() => undefined);
    }
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
          next.resolve(this.stoppedSummary());
        } else {
          this.startDrain(next);
        }
      }
    });
  }

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
      const round = await this.fetchRound(limit, overrides, tally);
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
    const summary: DrainSummary = { ...tally, ms: Date.now() - startedAt, empty, stopped };
    if (empty) this.emit("drained", summary);
    return summary;
  }

  /** One request: queued acks + up to `prefetch` gets. "wait" = backpressure, come back when acks arrived. */
  private async fetchRound(
    limit: number,
    overrides: DrainOverrides,
    tally: Tally,
  ): Promise<{ full: boolean } | "wait" | "stopped"> {
    const ackMode = this.modeNow === "ack";
    if (ackMode && this.emittedSinceLastGet) await this.ackWindow();
    this.emittedSinceLastGet = false;
    if (this.closed || this.paused) return "stopped";

    const useBatch = ackMode && !this.api.client.batchRefusesOffline;
    const taken = useBatch ? this.acks?.take() : undefined;
    const covered = taken ? coveredBy(taken.commands, this.held, this.o.authConnector) : 0;
    const room =
      ackMode && this.o.maxInFlight > 0 ? this.o.maxInFlight - (this.pendingCount - covered) : Number.POSITIVE_INFINITY;

    if (room <= 0) {
      // Backpressure: the taken acks go out on their own, then we wait for acks to free room.
      if (taken) await this.sendTaken(taken, tally);
      if (this.pendingCount >= this.o.maxInFlight) {
        this.setPhase("waiting");
        const ok = await this.waitForCapacity();
        if (!ok) return "stopped";
        this.setPhase("fetching");
      }
      return "wait";
    }

    const perGet = Math.min(limit, room);
    const gets = Math.max(1, Math.min(this.o.prefetch, Math.floor(room / limit) || 1));
    const base = this.fetchParams(perGet, overrides);
    const results: Array<{ limit: number; result?: OfflineGetResult; error?: Bitrix24Error }> = [];

    const ackCommands = taken ? Object.keys(taken.commands).length : 0;
    if (useBatch && (ackCommands > 0 || gets > 1)) {
      // Acks first (the portal runs a batch in order), then as many gets as fit in the request.
      const getCount = Math.max(1, Math.min(gets, MAX_BATCH - ackCommands));
      const commands: Record<string, BatchCommand> = { ...taken?.commands };
      const keys: string[] = [];
      let outcome: BatchOutcome;
      try {
        // Inside the try: taken acks must be settled whatever fails, or their senders wait forever.
        for (let i = 0; i < getCount; i++) {
          let key = `offline_get_${i}`;
          while (key in commands) key = `_${key}`;
          keys.push(key);
          commands[key] = this.api.getCommand(base);
        }
        outcome = await this.sendBatch(commands);
      } catch (err) {
        taken?.settle(asError(err));
        throw asError(err);
      }
      taken?.settle(outcome);
      tally.requests += outcome.requests;
      for (const key of keys) results.push({ limit: perGet, ...getAnswer(outcome, key) });
    } else {
      // Nothing taken here: without batch support the acks go out through the queue's own flush.
      const calls = Array.from({ length: gets }, () =>
        this.api.get(base).then(
          (result) => ({ limit: perGet, result }),
          (err) => ({ limit: perGet, error: asError(err) }),
        ),
      );
      const settled = await Promise.all(calls);
      tally.requests += settled.length;
      results.push(...settled);
    }

    const failure = results.find((r) => r.error)?.error;
    const groups = results.filter((r) => r.result && r.result.events.length > 0).map((r) => r.result!);
    await this.deliverFetched(groups, tally);
    if (failure) {
      if (ackMode && isExtendedModeRefusal(failure)) {
        this.extendedModeMissing(failure); // throws unless at-most-once is allowed
        return "wait"; // fetch again, now in auto mode
      }
      throw failure;
    }
    return { full: results.every((r) => (r.result?.events.length ?? 0) >= r.limit) };
  }

  /** Gives the flow a moment to ack what was just emitted, so the acks ride along with the next get. */
  private async ackWindow(): Promise<void> {
    if (!this.acks || this.o.ackWindowMs <= 0) return;
    const deadline = Date.now() + this.o.ackWindowMs;
    let last = -1;
    let stable = 0;
    while (Date.now() < deadline && !this.closed) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const n = this.acks.pending();
      if (n > 0 && n === last) {
        // Node-RED delivers each msg in its own turn: two turns without a new ack = the wave is in.
        if (++stable >= 2) return;
      } else {
        stable = 0;
      }
      last = n;
    }
  }

  private async sendTaken(taken: NonNullable<ReturnType<ConsumerAcks["take"]>>, tally: Tally): Promise<void> {
    try {
      const outcome = await this.sendBatch(taken.commands);
      tally.requests += outcome.requests;
      taken.settle(outcome);
    } catch (err) {
      taken.settle(asError(err));
    }
  }

  /** client.batch() with at most 50 commands per request (the portal's limit). */
  private async sendBatch(commands: Record<string, BatchCommand>): Promise<BatchOutcome> {
    const entries = Object.entries(commands);
    if (entries.length <= MAX_BATCH) return this.api.client.batch(commands);
    const merged: BatchOutcome = { result: {}, errors: {}, total: {}, next: {}, requests: 0 };
    for (let i = 0; i < entries.length; i += MAX_BATCH) {
      const part = await this.api.client.batch(Object.fromEntries(entries.slice(i, i + MAX_BATCH)));
      Object.assign(merged.result, part.result);
      Object.assign(merged.errors, part.errors);
      Object.assign(merged.total, part.total);
      Object.assign(merged.next, part.next);
      merged.time = part.time;
      merged.requests += part.requests;
    }
    return merged;
  }

  private waitForCapacity(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const check = () => {
        if (this.closed || this.paused) return resolve(false);
        if (this.pendingCount < this.o.maxInFlight) return resolve(true);
        this.capacityWaiters.push(check);
      };
      check();
    });
  }

  private wakeCapacityWaiters(): void {
    const waiters = this.capacityWaiters;
    this.capacityWaiters = [];
    for (const w of waiters) w();
  }

  private fetchParams(limit: number, overrides: DrainOverrides): OfflineGetParams {
    const params: OfflineGetParams = { limit, clear: this.modeNow === "ack" ? 0 : 1, error: this.errorFlag };
    const filter = overrides.filter ?? this.o.filter;
    const order = overrides.order ?? this.o.order;
    if (filter && Object.keys(filter).length > 0) params.filter = filter;
    if (order && Object.keys(order).length > 0) params.order = order;
    if (this.o.authConnector) params.auth_connector = this.o.authConnector;
    return params;
  }

  /** Re-selecting a process ALWAYS passes clear=0: with the default clear=1 the portal deletes what it returns. */
  private reselectParams(processId: string, limit: number): OfflineGetParams {
    const params: OfflineGetParams = { process_id: processId, clear: 0, error: this.errorFlag, limit };
    if (this.o.authConnector) params.auth_connector = this.o.authConnector;
    return params;
  }

  // ---------------------------------------------------------------------------------------------- delivery

  /** New records: journal first (fsync'd), then emit. */
  private async deliverFetched(results: OfflineGetResult[], tally: Tally): Promise<void> {
    if (results.length === 0) return;
    const now = Date.now();
    const groups: DeliveryGroup[] = [];
    for (const result of results) {
      const processId = this.modeNow === "ack" ? result.process_id : null;
      const deliveries = result.events.map((event) => ({
        event,
        id: Number(event.ID),
        deliveryCount: 1,
        redelivered: false,
      }));
      if (processId) {
        const proc: HeldProcess = this.held.get(processId) ?? {
          processId,
          size: result.events.length,
          deliveredAt: now,
          pending: new Map(),
        };
        this.held.set(processId, proc);
        for (const d of deliveries)
          this.addPending(proc, { id: d.id, messageId: d.event.MESSAGE_ID, deliveryCount: 1 });
      }
      groups.push({ processId, authConnector: this.o.authConnector, error: this.errorFlag, deliveries });
    }
    if (this.modeNow === "ack") await this.persist();
    // Closing: the records are in the journal and come back after the restart; nobody would receive them now.
    if (this.closed && this.modeNow === "ack") return;
    this.scheduleRedelivery();
    for (const group of groups) {
      tally.events += group.deliveries.length;
      tally.batches++;
      this.emittedSinceLastGet = true;
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
    let proc = this.held.get(processId);
    if (events.length === 0) {
      if (proc) this.dropProcess(proc);
      if (ackMode) await this.persist();
      this.emitState();
      return;
    }
    const now = Date.now();
    if (ackMode && !proc) {
      proc = { processId, size: events.length, deliveredAt: now, pending: new Map() };
      this.held.set(processId, proc);
    }
    const returned = new Set<number>();
    const redeliver: Delivery[] = [];
    const dead: Delivery[] = [];
    const exhausted: string[] = [];
    for (const event of events) {
      const id = Number(event.ID);
      returned.add(id);
      const known = proc?.pending.get(id);
      // A record we do not know under this process was delivered at least once by whoever held it.
      const before = known?.deliveryCount ?? 1;
      if (known?.marking) continue;
      if (ackMode && before >= this.o.maxDeliveries) {
        if (this.errorFlag === 0) {
          exhausted.push(event.MESSAGE_ID);
          if (proc) this.addPending(proc, { id, messageId: event.MESSAGE_ID, deliveryCount: before, marking: true });
          continue;
        }
        const deliveryCount = before + 1;
        if (proc) this.addPending(proc, { id, messageId: event.MESSAGE_ID, deliveryCount });
        dead.push({ event, id, deliveryCount, redelivered: true });
        continue;
      }
      const deliveryCount = before + 1;
      if (proc) this.addPending(proc, { id, messageId: event.MESSAGE_ID, deliveryCount });
      redeliver.push({ event, id, deliveryCount, redelivered: true });
    }
    if (proc) {
      // Records the process no longer holds were acked or marked elsewhere.
      for (const id of [...proc.pending.keys()]) if (!returned.has(id)) this.removePending(proc, id);
      proc.deliveredAt = now;
      proc.size = Math.max(proc.size, events.length);
    }
    if (ackMode) await this.persist();
    if (this.closed && ackMode) return;
    this.scheduleRedelivery();
    const group = (deliveries: Delivery[]): DeliveryGroup => ({
      processId,
      authConnector: this.o.authConnector,
      error: this.errorFlag,
      deliveries,
    });
    if (redeliver.length > 0) {
      tally.events += redeliver.length;
      tally.redelivered += redeliver.length;
      tally.batches++;
      this.emittedSinceLastGet = true;
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
        // Unmark: the next ack timeout tries again.
        const proc = this.held.get(processId);
        const ids = new Set(messageIds);
        for (const r of proc?.pending.values() ?? []) if (ids.has(r.messageId)) r.marking = false;
        this.emit("failure", asError(err));
      }),
    );
  }

  private handleAcked(notice: AckedNotice): void {
    if ((notice.authConnector ?? "") !== this.o.authConnector) return; // the portal matched nothing of ours
    // event.offline.error touches only ERROR=0 rows: records fetched with error=1 stay held.
    if (notice.kind === "error" && this.errorFlag === 1) return;
    const proc = this.held.get(notice.processId);
    if (!proc) return;
    if (notice.allOfProcess) {
      for (const id of [...proc.pending.keys()]) this.removePending(proc, id);
    } else {
      for (const id of notice.ids) this.removePending(proc, Number(id));
      if (notice.messageIds.length > 0) {
        const ids = new Set(notice.messageIds);
        for (const r of [...proc.pending.values()]) if (ids.has(r.messageId)) this.removePending(proc, r.id);
      }
    }
    if (proc.pending.size === 0 && !proc.busy) this.dropProcess(proc);
    // Losing this write is harmless (a re-select of an acked record returns nothing), so it need not be durable
    // at once: the next delivery's write carries it, or a timer writes it once the consumer is quiet. A snapshot
    // per ack call would be wasted in a drain, where the acks ride in with the next get whose delivery writes anyway.
    if (this.journal && !this.closed) this.persistSoon();
    this.wakeCapacityWaiters();
    this.emitState();
  }

  private addPending(proc: HeldProcess, record: PendingRecord): void {
    if (!proc.pending.has(record.id)) this.pendingCount++;
    proc.pending.set(record.id, record);
  }

  private removePending(proc: HeldProcess, id: number): void {
    if (proc.pending.delete(id)) this.pendingCount--;
  }

  private dropProcess(proc: HeldProcess): void {
    for (const id of [...proc.pending.keys()]) this.removePending(proc, id);
    this.held.delete(proc.processId);
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
    if (!this.journal) {
      this.journal = openJournal(this.o.stateDir, {
        portalHost: this.o.portalHost,
        clientId: this.o.clientId,
        authConnector: this.o.authConnector,
        error: this.errorFlag,
      });
    }
    const { processes, warning } = await this.journal.adopt();
    if (warning) this.emit("warning", warning);
    await this.recover(processes, tally);
    if (this.o.orphanSweep) {
      await this.sweepOrphans(tally).catch((err) => this.emit("failure", asError(err)));
      this.scheduleSweep();
    }
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

  /** Re-selects the journal's processes (clear=0, same flag and connector, no filter) and emits them first. */
  private async recover(processes: JournalProcess[], tally: Tally): Promise<void> {
    if (processes.length === 0) return;
    for (const p of processes) {
      const proc: HeldProcess = {
        processId: p.processId,
        size: p.size,
        deliveredAt: p.deliveredAt,
        pending: new Map(),
        busy: true,
      };
      for (const r of p.pending)
        this.addPending(proc, { id: r.id, messageId: r.messageId, deliveryCount: r.deliveryCount });
      this.held.set(p.processId, proc);
    }
    try {
      await this.reselectMany(
        processes.map((p) => p.processId),
        tally,
      );
    } finally {
      for (const p of processes) {
        const proc = this.held.get(p.processId);
        if (proc) proc.busy = false;
      }
      this.scheduleRedelivery();
    }
  }

  /** Re-selects several processes: one batch request for up to 50 of them (or single calls). */
  private async reselectMany(processIds: string[], tally: Tally): Promise<void> {
    const paramsOf = (id: string) =>
      this.reselectParams(
        id,
        Math.max(this.o.limit, this.held.get(id)?.size ?? 0, this.held.get(id)?.pending.size ?? 0),
      );
    let firstError: Bitrix24Error | undefined;
    const answers: Array<{ processId: string; events: OfflineEvent[] }> = [];
    if (!this.api.client.batchRefusesOffline && processIds.length > 1) {
      for (let i = 0; i < processIds.length; i += MAX_BATCH) {
        const chunk = processIds.slice(i, i + MAX_BATCH);
        const commands: Record<string, BatchCommand> = {};
        chunk.forEach((id, n) => {
          commands[`reselect_${n}`] = this.api.getCommand(paramsOf(id));
        });
        const outcome = await this.sendBatch(commands);
        tally.requests += outcome.requests;
        chunk.forEach((id, n) => {
          const { result, error } = getAnswer(outcome, `reselect_${n}`);
          if (error) firstError ??= error;
          else if (result) answers.push({ processId: id, events: result.events });
        });
      }
    } else {
      for (const id of processIds) {
        try {
          const result = await this.api.get(paramsOf(id));
          answers.push({ processId: id, events: result.events });
        } catch (err) {
          firstError ??= asError(err);
        }
        tally.requests++;
      }
    }
    for (const a of answers) await this.deliverReselected(a.processId, a.events, tally);
    if (firstError) {
      if (isExtendedModeRefusal(firstError)) this.extendedModeMissing(firstError);
      throw firstError;
    }
  }

  // ---------------------------------------------------------------------------------------------- timers

  /** One timer for the earliest ack deadline. */
  private scheduleRedelivery(delayMs?: number): void {
    if (this.closed || this.modeNow !== "ack") return;
    if (this.redeliveryTimer) clearTimeout(this.redeliveryTimer);
    this.redeliveryTimer = undefined;
    let due = Number.POSITIVE_INFINITY;
    for (const p of this.held.values()) if (!p.busy) due = Math.min(due, p.deliveredAt + this.o.ackTimeoutMs);
    if (!Number.isFinite(due)) return;
    const wait = delayMs ?? Math.max(0, due - Date.now());
    this.redeliveryTimer = setTimeout(() => this.onRedeliveryDue(), Math.min(wait, MAX_TIMER_MS));
  }

  private onRedeliveryDue(): void {
    this.redeliveryTimer = undefined;
    if (this.closed) return;
    if (this.paused) {
      this.dueWhilePaused = true;
      return;
    }
    const now = Date.now();
    const due = [...this.held.values()].filter((p) => !p.busy && p.deliveredAt + this.o.ackTimeoutMs <= now);
    if (due.length === 0) {
      this.scheduleRedelivery();
      return;
    }
    for (const p of due) p.busy = true;
    const tally = newTally();
    this.track(
      this.reselectMany(
        due.map((p) => p.processId),
        tally,
      )
        .catch((err) => {
          // Try again after a while; the records stay held meanwhile.
          const retryAt = Date.now() + Math.min(this.o.ackTimeoutMs, 30_000) - this.o.ackTimeoutMs;
          for (const p of due) p.deliveredAt = Math.max(p.deliveredAt, retryAt);
          this.emit("failure", asError(err));
        })
        .finally(() => {
          for (const p of due) {
            p.busy = false;
            if (p.pending.size === 0 && this.held.get(p.processId) === p) this.dropProcess(p);
          }
          this.scheduleRedelivery();
          this.emitState();
        }),
    );
  }

  private scheduleSweep(): void {
    if (this.closed || this.sweepTimer) return;
    this.sweepTimer = setInterval(
      () => {
        if (this.paused || this.closed) return;
        this.track(this.sweepOrphans(newTally()).catch((err) => this.emit("failure", asError(err))));
      },
      Math.min(this.o.ackTimeoutMs, MAX_TIMER_MS),
    );
  }

  /**
   * Finds records held under a process id that no consumer here knows (event.offline.list shows PROCESS_ID),
   * and after they stayed so for orphanAgeMs re-selects them with clear=0 and treats them as redelivered.
   */
  private async sweepOrphans(tally: Tally): Promise<void> {
    if (this.modeNow !== "ack" || this.closed) return;
    const records: OfflineListRecord[] = [];
    let quietPages = 0;
    for (let page = 0; page < this.o.sweepPages; page++) {
      const answer = await this.api.list({
        filter: { "=ERROR": this.errorFlag },
        start: page * 50,
        ...(this.o.authConnector ? { auth_connector: this.o.authConnector } : {}),
      });
      tally.requests++;
      records.push(...answer.records);
      if (answer.next === undefined || answer.records.length === 0) break;
      // Gets take the oldest records first, so held ones cluster at the front: two pages without any = done.
      if (answer.records.some((r) => r.PROCESS_ID)) quietPages = 0;
      else if (++quietPages >= 2) break;
    }
    const known = this.journal?.knownProcessIds() ?? new Set<string>();
    for (const id of this.held.keys()) known.add(id);
    const now = Date.now();
    const seenNow = new Set<string>();
    const adopt: string[] = [];
    for (const r of records) {
      const pid = r.PROCESS_ID;
      if (!pid || known.has(pid) || seenNow.has(pid)) continue;
      seenNow.add(pid);
      const first = this.orphanSeen.get(pid) ?? now;
      this.orphanSeen.set(pid, first);
      if (now - first >= this.o.orphanAgeMs) adopt.push(pid);
    }
    for (const pid of [...this.orphanSeen.keys()]) if (!seenNow.has(pid)) this.orphanSeen.delete(pid);
    if (adopt.length === 0 || this.closed) return;
    for (const pid of adopt) this.orphanSeen.delete(pid);
    const before = new Map(adopt.map((pid) => [pid, this.held.get(pid)?.pending.size ?? 0]));
    await this.reselectMany(adopt, tally);
    for (const pid of adopt) {
      const count = (this.held.get(pid)?.pending.size ?? 0) - (before.get(pid) ?? 0);
      if (count > 0) this.emit("warning", { code: "ORPHANS_ADOPTED", processId: pid, count });
    }
  }

  private clearTimers(): void {
    if (this.redeliveryTimer) clearTimeout(this.redeliveryTimer);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.persistTimer) clearTimeout(this.persistTimer);
    this.redeliveryTimer = undefined;
    this.sweepTimer = undefined;
    this.persistTimer = undefined;
  }

  // ---------------------------------------------------------------------------------------------- misc

  private journalSnapshot(): JournalProcess[] {
    return [...this.held.values()].map((p) => ({
      processId: p.processId,
      size: p.size,
      deliveredAt: p.deliveredAt,
      pending: [...p.pending.values()].map((r) => ({
        id: r.id,
        messageId: r.messageId,
        deliveryCount: r.deliveryCount,
      })),
    }));
  }

  private persist(): Promise<void> {
    // This write carries every change so far, including acks waiting for persistSoon().
    if (this.persistTimer) clearTimeout(this.persistTimer);
    this.persistTimer = undefined;
    return this.journal ? this.journal.save(this.journalSnapshot()) : Promise.resolve();
  }

  /** Writes the journal within ACK_PERSIST_DELAY_MS unless another write carries the changes first. */
  private persistSoon(): void {
    if (this.persistTimer) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined;
      if (this.closed) return; // close() writes the journal itself
      this.track(this.persist().catch((err) => this.emit("failure", asError(err))));
    }, ACK_PERSIST_DELAY_MS);
  }

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

  private stoppedSummary(): DrainSummary {
    return { events: 0, batches: 0, ms: 0, requests: 0, redelivered: 0, empty: false, stopped: true };
  }
}

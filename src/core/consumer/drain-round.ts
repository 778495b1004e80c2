import type { TakenAcks } from "../acks/ack-queue";
import type { BatchOutcome } from "../client/client";
import { MAX_BATCH_COMMANDS } from "../client/client";
import type { EntityReads, EntityStage } from "../entities/entity-stage";
import { isExtendedModeRefusal } from "../queue/extended-mode";
import type { Bitrix24Error } from "../rest/errors";
import type { BatchCommand, OfflineFilter, OfflineGetParams, OfflineGetResult, OfflineOrder } from "../rest/types";
import { getAnswer, sendChunked } from "./consumer-batch";
import {
  asError,
  type ConsumerAcks,
  type ConsumerApi,
  type ConsumerFlags,
  type ConsumerPhase,
  type DeliveryGroup,
  type DrainOverrides,
  type Tally,
} from "./consumer-types";
import type { HeldLedger } from "./held-ledger";

/**
 * One round of a drain, in stages: give the flow a moment to ack what the last round emitted (ack window) →
 * take the queued acks → room left under maxInFlight (or wait for acks: backpressure) → ONE request with the
 * acks, the reads of the objects of the last round's events (entity stage, when on) and up to `prefetch` gets →
 * emit the last round's events with their objects → record what came back, and emit it (or, with the entity
 * stage, keep it for the next round's reads) → report a failure.
 */

export type RoundEnd = { full: boolean } | "wait" | "stopped";

/** One get of the round: what it asked for and what came back. */
interface FetchedGet {
  limit: number;
  result?: OfflineGetResult;
  error?: Bitrix24Error;
}

export interface RoundSettings {
  prefetch: number;
  /** 0 = no limit. */
  maxInFlight: number;
  ackWindowMs: number;
  errorFlag: 0 | 1;
  authConnector: string;
  filter?: OfflineFilter;
  order?: OfflineOrder;
}

/** What a round needs of the consumer that runs it. */
export interface RoundHost {
  /** Closed or paused: no new fetch. */
  readonly flags: ConsumerFlags;
  setPhase(phase: ConsumerPhase): void;
  /** A get that holds records goes out: its in-flight mark first (journal-writer.ts); resolves to the mark's time. */
  fetchStarting(): Promise<number>;
  /** The request carrying the marked get failed: the mark goes. */
  fetchFailed(since: number): void;
  /** New records: held and in the journal (ack mode) before anything is emitted; the mark `since` goes with them. */
  recordFetched(results: OfflineGetResult[], since?: number): Promise<DeliveryGroup[]>;
  /** Emits (after the change stage, when on: hence a promise). */
  emit(groups: DeliveryGroup[], tally: Tally): Promise<void>;
  /** The portal refused ack mode: throws unless the user allowed the at-most-once fallback. */
  extendedModeMissing(cause: Bitrix24Error): void;
}

export class DrainRound {
  private emittedSinceLastGet = false;
  private capacityWaiters: Array<() => void> = [];

  constructor(
    private readonly api: ConsumerApi,
    private readonly acks: ConsumerAcks | undefined,
    private readonly ledger: HeldLedger,
    private readonly s: RoundSettings,
    private readonly host: RoundHost,
    private readonly entities?: EntityStage<DeliveryGroup>,
  ) {}

  /** Events fetched whose objects the next request reads: a drain ends with a round that only reads (flush). */
  get waitingForObjects(): boolean {
    return this.entities?.waiting ?? false;
  }

  /** Events went out: the next round first waits a moment for their acks. */
  noteEmitted(): void {
    this.emittedSinceLastGet = true;
  }

  /** Acks arrived, or the consumer paused or closed: a round waiting for room looks again. */
  wakeCapacityWaiters(): void {
    const waiters = this.capacityWaiters;
    this.capacityWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * One request: queued acks (+ reads) + up to `prefetch` gets. "wait" = backpressure, come back when acks
   * arrived. With `fetch` false it only reads the waiting events' objects and emits them (the end of a drain).
   */
  async run(limit: number, overrides: DrainOverrides, tally: Tally, fetch = true): Promise<RoundEnd> {
    const ackMode = this.host.flags.mode === "ack";
    if (ackMode && this.emittedSinceLastGet) await this.ackWindow();
    this.emittedSinceLastGet = false;
    if (fetch ? this.host.flags.closed || this.host.flags.paused : this.host.flags.closed && ackMode) return "stopped";

    const useBatch = ackMode && !this.api.client.batchRefusesOffline;
    const taken = useBatch ? this.acks?.take() : undefined;
    const covered = taken ? this.ledger.coveredBy(taken.commands) : 0;
    const room =
      ackMode && this.s.maxInFlight > 0
        ? this.s.maxInFlight - (this.ledger.pending - covered)
        : Number.POSITIVE_INFINITY;
    // Events waiting for their objects count as in flight, but no ack can come for them before they are emitted.
    if (room <= 0 && !this.waitingForObjects) return this.backpressure(taken, tally);

    const reads = this.entities?.takeReads();
    const perGet = Math.min(limit, Math.max(room, 1));
    const gets = !fetch || room <= 0 ? 0 : Math.max(1, Math.min(this.s.prefetch, Math.floor(room / limit) || 1));
    // A crash between the portal's answer and the journal write would leave the batch held under a process id no
    // journal names: the mark says a get is out, so neither a neighbour nor a sweep takes its batch meanwhile.
    const since = ackMode && gets > 0 ? await this.host.fetchStarting() : undefined;
    let request: Awaited<ReturnType<DrainRound["request"]>>;
    try {
      request = await this.request(taken, reads, this.fetchParams(perGet, overrides), perGet, gets, tally);
    } catch (err) {
      if (since !== undefined) this.host.fetchFailed(since);
      throw err;
    }
    const { fetched, outcome } = request;

    const failure = fetched.find((r) => r.error)?.error;
    const results = fetched.filter((r) => r.result && r.result.events.length > 0).map((r) => r.result!);
    const groups = await this.host.recordFetched(results, since);
    // Emitting comes after the journal write: the flow's acks then find the next round about to start, and ride
    // with it, instead of waiting through the write and leaving on their own (a request of their own each).
    // The last round's events go first: they were fetched (and held) before these.
    if (reads && outcome) await this.host.emit(reads.finish(outcome), tally);
    if (this.entities) this.entities.hold(groups);
    else await this.host.emit(groups, tally);
    if (failure) {
      if (ackMode && isExtendedModeRefusal(failure)) {
        this.host.extendedModeMissing(failure); // throws unless at-most-once is allowed
        return "wait"; // fetch again, now in auto mode
      }
      throw failure;
    }
    if (gets === 0) return fetch ? "wait" : { full: false };
    return { full: fetched.every((r) => (r.result?.events.length ?? 0) >= r.limit) };
  }

  /** No room: the taken acks go out on their own, then we wait for acks to free room. */
  private async backpressure(taken: TakenAcks | undefined, tally: Tally): Promise<RoundEnd> {
    if (taken) await this.sendTaken(taken, tally);
    if (this.ledger.pending >= this.s.maxInFlight) {
      this.host.setPhase("waiting");
      const ok = await this.waitForCapacity();
      if (!ok) return "stopped";
      this.host.setPhase("fetching");
    }
    return "wait";
  }

  /** The round's request: acks first (the portal runs a batch in order), then the reads, then as many gets as fit. */
  private async request(
    taken: TakenAcks | undefined,
    reads: EntityReads<DeliveryGroup> | undefined,
    params: OfflineGetParams,
    perGet: number,
    gets: number,
    tally: Tally,
  ): Promise<{ fetched: FetchedGet[]; outcome?: BatchOutcome }> {
    const ackCommands = taken ? Object.keys(taken.commands).length : 0;
    const readCommands = reads ? Object.keys(reads.commands).length : 0;
    const useBatch = this.host.flags.mode === "ack" && !this.api.client.batchRefusesOffline;
    if ((useBatch && (ackCommands > 0 || gets > 1)) || readCommands > 0 || gets === 0) {
      const getCount = gets === 0 ? 0 : Math.max(1, Math.min(gets, MAX_BATCH_COMMANDS - ackCommands - readCommands));
      const commands: Record<string, BatchCommand> = { ...taken?.commands, ...reads?.commands };
      const keys: string[] = [];
      let outcome: BatchOutcome;
      try {
        // Inside the try: taken acks must be settled whatever fails, or their senders wait forever.
        for (let i = 0; i < getCount; i++) {
          let key = `offline_get_${i}`;
          while (key in commands) key = `_${key}`;
          keys.push(key);
          commands[key] = this.api.getCommand(params);
        }
        outcome =
          Object.keys(commands).length > 0
            ? await sendChunked(this.api.client, commands)
            : { result: {}, errors: {}, total: {}, next: {}, requests: 0 };
      } catch (err) {
        taken?.settle(asError(err));
        throw asError(err);
      }
      taken?.settle(outcome);
      tally.requests += outcome.requests;
      return { fetched: keys.map((key) => ({ limit: perGet, ...getAnswer(outcome, key) })), outcome };
    }
    // Nothing taken here: without batch support the acks go out through the queue's own flush.
    const calls = Array.from({ length: gets }, () =>
      this.api.get(params).then(
        (result): FetchedGet => ({ limit: perGet, result }),
        (err): FetchedGet => ({ limit: perGet, error: asError(err) }),
      ),
    );
    const settled = await Promise.all(calls);
    tally.requests += settled.length;
    return { fetched: settled };
  }

  /** Gives the flow a moment to ack what was just emitted, so the acks ride along with the next get. */
  private async ackWindow(): Promise<void> {
    if (!this.acks || this.s.ackWindowMs <= 0) return;
    const deadline = Date.now() + this.s.ackWindowMs;
    let last = -1;
    let stable = 0;
    while (Date.now() < deadline && !this.host.flags.closed) {
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

  private async sendTaken(taken: TakenAcks, tally: Tally): Promise<void> {
    try {
      const outcome = await sendChunked(this.api.client, taken.commands);
      tally.requests += outcome.requests;
      taken.settle(outcome);
    } catch (err) {
      taken.settle(asError(err));
    }
  }

  private waitForCapacity(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const check = () => {
        if (this.host.flags.closed || this.host.flags.paused) return resolve(false);
        if (this.ledger.pending < this.s.maxInFlight) return resolve(true);
        this.capacityWaiters.push(check);
      };
      check();
    });
  }

  private fetchParams(limit: number, overrides: DrainOverrides): OfflineGetParams {
    const params: OfflineGetParams = { limit, clear: this.host.flags.mode === "ack" ? 0 : 1, error: this.s.errorFlag };
    const filter = overrides.filter ?? this.s.filter;
    const order = overrides.order ?? this.s.order;
    if (filter && Object.keys(filter).length > 0) params.filter = filter;
    if (order && Object.keys(order).length > 0) params.order = order;
    if (this.s.authConnector) params.auth_connector = this.s.authConnector;
    return params;
  }
}

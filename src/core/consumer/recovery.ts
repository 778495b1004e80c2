import type { ErrorTarget } from "../acks/ack-queue";
import type { EntityStage } from "../entities/entity-stage";
import type { Bitrix24Error } from "../rest/errors";
import type { BatchCommand, OfflineEvent, OfflineGetParams } from "../rest/types";
import type { JournalProcess } from "../state/process-journal";
import { getAnswer, sendChunked } from "./consumer-batch";
import {
  asError,
  type ConsumerApi,
  type ConsumerFlags,
  type ConsumerWarning,
  type Delivery,
  type DeliveryGroup,
  newTally,
  type Tally,
} from "./consumer-types";
import type { HeldLedger } from "./held-ledger";

/**
 * Re-selecting held processes with clear=0, and delivering what comes back: start-up recovery of the journal's
 * processes, redelivery after the ack timeout, orphan adoption and msg.processId all come here. One batch request
 * carries up to 50 re-selects. Delivery counts go up and are persisted BEFORE emitting; exhausted records are
 * marked as errors (error=0) or leave on the dead-letter output (error=1, which the portal cannot mark again).
 */

const MAX_BATCH = 50;

export interface RecoverySettings {
  limit: number;
  errorFlag: 0 | 1;
  authConnector: string;
}

export interface RecoveryHooks {
  readonly flags: ConsumerFlags;
  /** The journal, durably (before emitting). */
  save(): Promise<void>;
  emit(kind: "deliver" | "dead-letter", group: DeliveryGroup): void;
  /** Marks exhausted error=0 records with event.offline.error (undefined: no ack queue). */
  markError(target: ErrorTarget): Promise<void> | undefined;
  warn(warning: ConsumerWarning): void;
  fail(err: unknown): void;
  track(work: Promise<unknown>): void;
  emitState(): void;
  /** The first failure of a re-select round, before it is thrown: may throw a more telling error instead. */
  failed(err: Bitrix24Error): void;
  /** The recovered processes can come due. */
  scheduleRedelivery(): void;
  /**
   * Changes option (change-tracker.ts): `reselected` before anything else (staged states of records the re-select
   * no longer returns were acked: they advance), `compare` before emitting (the same changes again; with `drop`,
   * events with no watched change are acked by the consumer and left out).
   */
  changes?: {
    reselected(processId: string, events: OfflineEvent[]): Promise<void>;
    compare(groups: DeliveryGroup[], tally: Tally, drop: boolean): Promise<DeliveryGroup[]>;
  };
}

export class Recovery {
  constructor(
    private readonly api: ConsumerApi,
    private readonly ledger: HeldLedger,
    private readonly s: RecoverySettings,
    private readonly hooks: RecoveryHooks,
    private readonly entities?: EntityStage<DeliveryGroup>,
  ) {}

  /** Re-selecting a process ALWAYS passes clear=0: with the default clear=1 the portal deletes what it returns. */
  params(processId: string, limit: number): OfflineGetParams {
    const params: OfflineGetParams = { process_id: processId, clear: 0, error: this.s.errorFlag, limit };
    if (this.s.authConnector) params.auth_connector = this.s.authConnector;
    return params;
  }

  /** Re-selects the journal's processes (clear=0, same flag and connector, no filter) and emits them first. */
  async recoverJournal(processes: JournalProcess[], tally: Tally): Promise<void> {
    if (processes.length === 0) return;
    const ids = processes.map((p) => p.processId);
    this.ledger.adoptJournal(processes);
    try {
      await this.reselectMany(ids, tally);
    } finally {
      this.ledger.releaseBusy(ids);
      this.hooks.scheduleRedelivery();
    }
  }

  /** The processes whose ack timeout passed: re-selected now; after a failure tried again in `retryMs`. */
  redeliverDue(retryMs: number): void {
    const due = this.ledger.takeDue(Date.now());
    if (due.length === 0) {
      this.hooks.scheduleRedelivery();
      return;
    }
    const ids = due.map((p) => p.processId);
    this.hooks.track(
      this.reselectMany(ids, newTally())
        .catch((err) => {
          // Try again after a while; the records stay held meanwhile.
          this.ledger.postpone(due, Date.now() + retryMs);
          this.hooks.fail(err);
        })
        .finally(() => {
          this.ledger.finishDue(due);
          this.hooks.scheduleRedelivery();
          this.hooks.emitState();
        }),
    );
  }

  /** Re-selects several processes: one batch request for up to 50 of them (or single calls). */
  async reselectMany(processIds: string[], tally: Tally, sizes?: Map<string, number>): Promise<void> {
    const paramsOf = (id: string) =>
      this.params(id, Math.max(this.s.limit, this.ledger.sizeOf(id), this.ledger.pendingOf(id), sizes?.get(id) ?? 0));
    let firstError: Bitrix24Error | undefined;
    const answers: Array<{ processId: string; events: OfflineEvent[] }> = [];
    if (!this.api.client.batchRefusesOffline && processIds.length > 1) {
      for (let i = 0; i < processIds.length; i += MAX_BATCH) {
        const chunk = processIds.slice(i, i + MAX_BATCH);
        const commands: Record<string, BatchCommand> = {};
        chunk.forEach((id, n) => {
          commands[`reselect_${n}`] = this.api.getCommand(paramsOf(id));
        });
        const outcome = await sendChunked(this.api.client, commands);
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
    for (const a of answers) await this.deliver(a.processId, a.events, tally);
    if (firstError) {
      this.hooks.failed(firstError);
      throw firstError;
    }
  }

  /**
   * Records of a process re-selected with clear=0 (recovery, redelivery, orphan adoption, msg.processId): delivery
   * counts go up and are persisted BEFORE emitting; exhausted records are marked as errors (error=0) or leave on
   * the dead-letter output (error=1, which the portal cannot mark again).
   */
  async deliver(processId: string, events: OfflineEvent[], tally: Tally): Promise<void> {
    const ackMode = this.hooks.flags.mode === "ack";
    await this.hooks.changes?.reselected(processId, events);
    if (events.length === 0) {
      this.ledger.dropProcess(processId);
      if (ackMode) await this.hooks.save();
      this.hooks.emitState();
      return;
    }
    const { redeliver, dead, exhausted } = this.ledger.recordReselected(processId, events, Date.now(), ackMode);
    if (ackMode) await this.hooks.save();
    if (this.hooks.flags.closed && ackMode) return;
    const group = (deliveries: Delivery[]): DeliveryGroup => ({
      processId,
      authConnector: this.s.authConnector,
      error: this.s.errorFlag,
      deliveries,
    });
    if (this.entities && redeliver.length + dead.length > 0) {
      // Read again: the object may have changed since the first delivery. No drain request to ride with here.
      await this.entities.readNow([group(redeliver), group(dead)], async (commands) => {
        const outcome = await sendChunked(this.api.client, commands);
        tally.requests += outcome.requests;
        return outcome;
      });
      if (this.hooks.flags.closed && ackMode) return;
    }
    const changes = this.hooks.changes;
    // Compared again with the last acked state: a redelivered event carries the same changes.
    const [again] = changes && redeliver.length > 0 ? await changes.compare([group(redeliver)], tally, true) : [];
    const [gone] = changes && dead.length > 0 ? await changes.compare([group(dead)], tally, false) : [];
    if (changes && this.hooks.flags.closed && ackMode) return;
    this.hooks.scheduleRedelivery();
    const emitted = changes ? again : redeliver.length > 0 ? group(redeliver) : undefined;
    if (emitted) {
      tally.events += emitted.deliveries.length;
      tally.redelivered += emitted.deliveries.length;
      tally.batches++;
      this.hooks.emit("deliver", emitted);
    }
    const deadGroup = changes ? gone : dead.length > 0 ? group(dead) : undefined;
    if (deadGroup) this.hooks.emit("dead-letter", deadGroup);
    if (exhausted.length > 0) this.markExhausted(processId, exhausted);
    this.hooks.emitState();
  }

  private markExhausted(processId: string, messageIds: string[]): void {
    this.hooks.warn({ code: "MARKED_AS_ERROR", processId, messageIds });
    const target = { processId, messageIds, ...(this.s.authConnector ? { authConnector: this.s.authConnector } : {}) };
    const marking = this.hooks.markError(target);
    if (!marking) return;
    this.hooks.track(
      marking.catch((err) => {
        this.ledger.unmark(processId, messageIds); // the next ack timeout tries again
        this.hooks.fail(err);
      }),
    );
  }
}

import type { Bitrix24Error } from "../rest/errors";
import type { BatchCommand, OfflineEvent, OfflineGetParams } from "../rest/types";
import type { JournalProcess } from "../state/process-journal";
import { getAnswer, sendChunked } from "./consumer-batch";
import { asError, type ConsumerApi, type Tally } from "./consumer-types";
import type { HeldLedger } from "./held-ledger";

/**
 * Re-selecting held processes with clear=0: start-up recovery of the journal's processes, redelivery after the
 * ack timeout, orphan adoption and msg.processId all come here. One batch request carries up to 50 re-selects.
 */

const MAX_BATCH = 50;

export interface RecoverySettings {
  limit: number;
  errorFlag: 0 | 1;
  authConnector: string;
}

export interface RecoveryHooks {
  /** Emits what a re-select returned for a process (delivery counts raised and persisted first). */
  deliver(processId: string, events: OfflineEvent[], tally: Tally): Promise<void>;
  /** The first failure of a re-select round, before it is thrown: may throw a more telling error instead. */
  failed(err: Bitrix24Error): void;
  /** The recovered processes can come due. */
  scheduleRedelivery(): void;
}

export class Recovery {
  constructor(
    private readonly api: ConsumerApi,
    private readonly ledger: HeldLedger,
    private readonly s: RecoverySettings,
    private readonly hooks: RecoveryHooks,
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

  /** Re-selects several processes: one batch request for up to 50 of them (or single calls). */
  async reselectMany(processIds: string[], tally: Tally): Promise<void> {
    const paramsOf = (id: string) =>
      this.params(id, Math.max(this.s.limit, this.ledger.sizeOf(id), this.ledger.pendingOf(id)));
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
    for (const a of answers) await this.hooks.deliver(a.processId, a.events, tally);
    if (firstError) {
      this.hooks.failed(firstError);
      throw firstError;
    }
  }
}

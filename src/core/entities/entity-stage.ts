import type { BatchOutcome } from "../client/client";
import type { Bitrix24Error } from "../rest/errors";
import type { BatchCommand, OfflineEvent } from "../rest/types";
import {
  type EntityAttachment,
  type EntityMap,
  type EntityPlan,
  type EntityReadFailure,
  planEntityReads,
} from "./entity-reads";

/**
 * The entity stage of a drain round (DESIGN.md, "Doing the work"): the objects of the events a round fetched are
 * read by the NEXT round's request, which the drain sends anyway (acks + reads + next get), so attaching objects
 * costs no extra request while draining. Until then the events wait here, already held and in the journal.
 * Re-selected events (recovery, redelivery, msg.processId) are read at once, in a request of their own.
 * A failed read never holds an event back: it goes out without its object, the failure reported once per method.
 */

/**
 * What the stage needs of a group of events: each event, and a place for its object. The consumer's
 * DeliveryGroup is one; the stage is generic over it so that entities/ need not import consumer/ (which
 * imports entities/).
 */
export interface EventGroup {
  deliveries: Array<{ event: OfflineEvent; entity?: EntityAttachment }>;
}

export interface EntityReads<G extends EventGroup = EventGroup> {
  commands: Record<string, BatchCommand>;
  /** Attaches the answers; returns the groups, now ready to emit. */
  finish(outcome: BatchOutcome | Bitrix24Error): G[];
}

/**
 * More reads that ride in the same requests as the objects' (the changes option's field metadata): commands for
 * these events, and their answers back.
 */
export interface RidingReads {
  commands(events: OfflineEvent[]): Record<string, BatchCommand>;
  absorb(commands: Record<string, BatchCommand>, outcome: BatchOutcome | Bitrix24Error): void;
}

export class EntityStage<G extends EventGroup = EventGroup> {
  private awaiting: G[] = [];
  /** `method\0code` of failures reported and not yet followed by a successful read of that method. */
  private readonly reported = new Set<string>();

  constructor(
    private readonly map: EntityMap,
    private readonly report: (failure: EntityReadFailure) => void,
    /** A method whose failure was reported read successfully again. */
    private readonly recovered: (method: string) => void = () => undefined,
    private readonly riding?: RidingReads,
  ) {}

  /** Events fetched and recorded, waiting for the next request to carry their reads. */
  get waiting(): boolean {
    return this.awaiting.length > 0;
  }

  hold(groups: G[]): void {
    this.awaiting.push(...groups);
  }

  /**
   * The reads of the waiting events. They stay waiting until finish(): a request that fails leaves them for
   * the next one.
   */
  takeReads(): EntityReads<G> | undefined {
    if (this.awaiting.length === 0) return undefined;
    const groups = this.awaiting;
    const plan = this.plan(groups);
    const extra = this.ridingCommands(groups);
    return {
      commands: { ...plan.commands, ...extra },
      finish: (outcome) => {
        this.awaiting = this.awaiting.filter((g) => !groups.includes(g));
        this.riding?.absorb(extra, outcome);
        this.settle(plan, outcome);
        return groups;
      },
    };
  }

  /** Reads the groups' objects with a request of its own (re-selects); a failure is attached, never thrown. */
  async readNow(groups: G[], send: (commands: Record<string, BatchCommand>) => Promise<BatchOutcome>): Promise<void> {
    const plan = this.plan(groups);
    if (Object.keys(plan.commands).length === 0) {
      this.settle(plan, { result: {}, errors: {}, total: {}, next: {}, requests: 0 });
      return;
    }
    const extra = this.ridingCommands(groups);
    let outcome: BatchOutcome | Bitrix24Error;
    try {
      outcome = await send({ ...plan.commands, ...extra });
    } catch (err) {
      outcome = err as Bitrix24Error;
    }
    this.riding?.absorb(extra, outcome);
    this.settle(plan, outcome);
  }

  private ridingCommands(groups: G[]): Record<string, BatchCommand> {
    if (!this.riding) return {};
    return this.riding.commands(groups.flatMap((g) => g.deliveries.map((d) => d.event)));
  }

  private plan(groups: G[]): EntityPlan {
    const deliveries = groups.flatMap((g) => g.deliveries);
    return planEntityReads(
      deliveries.map((d) => d.event),
      this.map,
      (index, attachment) => {
        deliveries[index].entity = attachment;
      },
    );
  }

  private settle(plan: EntityPlan, outcome: BatchOutcome | Bitrix24Error): void {
    const failures = plan.attach(outcome);
    const failedMethods = new Set(failures.map((f) => f.method));
    for (const command of Object.values(plan.commands)) {
      if (failedMethods.has(command.method)) continue;
      let cleared = false;
      for (const key of [...this.reported]) {
        if (key.startsWith(`${command.method}\u0000`)) cleared = this.reported.delete(key);
      }
      if (cleared) this.recovered(command.method);
    }
    for (const failure of failures) {
      const key = `${failure.method}\u0000${failure.error.code}`;
      if (this.reported.has(key)) continue;
      this.reported.add(key);
      this.report(failure);
    }
  }
}

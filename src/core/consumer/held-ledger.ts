import type { AckedNotice } from "../acks/ack-queue";
import type { BatchCommand, OfflineEvent } from "../rest/types";
import type { JournalProcess } from "../state/process-journal";
import type { Delivery } from "./consumer-types";

/**
 * The held-process ledger of ack mode: which records each process id holds, how often each was delivered,
 * when its ack timeout runs out. Bookkeeping only: no I/O, no emitting. The consumer persists what it says
 * (ledger.snapshot()) before emitting what it returns.
 */

const OFFLINE_CLEAR = "event.offline.clear";
const MAX_TIMER_MS = 2_147_483_647;

export interface LedgerRules {
  /** Records fetched with error=1 cannot be marked as errors again (event.offline.error touches ERROR=0). */
  errorFlag: 0 | 1;
  authConnector: string;
  maxDeliveries: number;
  ackTimeoutMs: number;
}

interface PendingRecord {
  id: number;
  messageId: string;
  deliveryCount: number;
  /** event.offline.error sent for it; waiting for the "acked" notice. */
  marking?: boolean;
}

/** One process id and its unacked records. Outside the ledger only a handle, passed back to it. */
export interface HeldProcess {
  readonly processId: string;
  size: number;
  deliveredAt: number;
  pending: Map<number, PendingRecord>;
  /** A re-select of this process is in flight. */
  busy?: boolean;
}

/** What a re-select means for the records it returned. */
export interface ReselectPlan {
  /** Emit again, delivery count raised. */
  redeliver: Delivery[];
  /** error=1 records past maxDeliveries: the dead-letter output. */
  dead: Delivery[];
  /** Message ids of error=0 records past maxDeliveries: to be marked with event.offline.error. */
  exhausted: string[];
}

export class HeldLedger {
  private readonly held = new Map<string, HeldProcess>();
  private pendingCount = 0;

  constructor(private readonly rules: LedgerRules) {}

  /** Unacknowledged records over all processes. */
  get pending(): number {
    return this.pendingCount;
  }

  processIds(): string[] {
    return [...this.held.keys()];
  }

  /** The largest batch the process was seen with (0 when not held). */
  sizeOf(processId: string): number {
    return this.held.get(processId)?.size ?? 0;
  }

  /** Unacked records of the process (0 when not held). */
  pendingOf(processId: string): number {
    return this.held.get(processId)?.pending.size ?? 0;
  }

  /** New records of a get (delivery 1); with a process id (ack mode) they are held until acked. */
  recordFetched(processId: string | null, events: OfflineEvent[], now: number): Delivery[] {
    const deliveries = events.map((event) => ({ event, id: Number(event.ID), deliveryCount: 1, redelivered: false }));
    if (processId) {
      const proc: HeldProcess = this.held.get(processId) ?? {
        processId,
        size: events.length,
        deliveredAt: now,
        pending: new Map(),
      };
      this.held.set(processId, proc);
      for (const d of deliveries) this.add(proc, { id: d.id, messageId: d.event.MESSAGE_ID, deliveryCount: 1 });
    }
    return deliveries;
  }

  /** The journal's processes, held again and busy until their re-select (see releaseBusy). */
  adoptJournal(processes: JournalProcess[]): void {
    for (const p of processes) {
      const proc: HeldProcess = {
        processId: p.processId,
        size: p.size,
        deliveredAt: p.deliveredAt,
        pending: new Map(),
        busy: true,
      };
      for (const r of p.pending) this.add(proc, { id: r.id, messageId: r.messageId, deliveryCount: r.deliveryCount });
      this.held.set(p.processId, proc);
    }
  }

  releaseBusy(processIds: string[]): void {
    for (const id of processIds) {
      const proc = this.held.get(id);
      if (proc) proc.busy = false;
    }
  }

  /**
   * Records a re-select (clear=0) returned for a process: delivery counts go up; records past maxDeliveries are
   * marked (error=0) or dead-lettered (error=1); records the process no longer holds were acked elsewhere.
   * `hold` is false in auto mode, where nothing is held.
   */
  recordReselected(processId: string, events: OfflineEvent[], now: number, hold: boolean): ReselectPlan {
    let proc = this.held.get(processId);
    if (hold && !proc) {
      proc = { processId, size: events.length, deliveredAt: now, pending: new Map() };
      this.held.set(processId, proc);
    }
    const returned = new Set<number>();
    const plan: ReselectPlan = { redeliver: [], dead: [], exhausted: [] };
    for (const event of events) {
      const id = Number(event.ID);
      returned.add(id);
      const known = proc?.pending.get(id);
      // A record we do not know under this process was delivered at least once by whoever held it.
      const before = known?.deliveryCount ?? 1;
      if (known?.marking) continue;
      if (hold && before >= this.rules.maxDeliveries) {
        if (this.rules.errorFlag === 0) {
          plan.exhausted.push(event.MESSAGE_ID);
          if (proc) this.add(proc, { id, messageId: event.MESSAGE_ID, deliveryCount: before, marking: true });
          continue;
        }
        const deliveryCount = before + 1;
        if (proc) this.add(proc, { id, messageId: event.MESSAGE_ID, deliveryCount });
        plan.dead.push({ event, id, deliveryCount, redelivered: true });
        continue;
      }
      const deliveryCount = before + 1;
      if (proc) this.add(proc, { id, messageId: event.MESSAGE_ID, deliveryCount });
      plan.redeliver.push({ event, id, deliveryCount, redelivered: true });
    }
    if (proc) {
      for (const id of [...proc.pending.keys()]) if (!returned.has(id)) this.remove(proc, id);
      proc.deliveredAt = now;
      proc.size = Math.max(proc.size, events.length);
    }
    return plan;
  }

  /** Marking them as errors failed: the next ack timeout tries again. */
  unmark(processId: string, messageIds: string[]): void {
    const ids = new Set(messageIds);
    for (const r of this.held.get(processId)?.pending.values() ?? []) if (ids.has(r.messageId)) r.marking = false;
  }

  /** A clear/error call succeeded. False when it concerned nothing this ledger holds. */
  applyAck(notice: AckedNotice): boolean {
    if ((notice.authConnector ?? "") !== this.rules.authConnector) return false; // the portal matched nothing of ours
    // event.offline.error touches only ERROR=0 rows: records fetched with error=1 stay held.
    if (notice.kind === "error" && this.rules.errorFlag === 1) return false;
    const proc = this.held.get(notice.processId);
    if (!proc) return false;
    if (notice.allOfProcess) {
      for (const id of [...proc.pending.keys()]) this.remove(proc, id);
    } else {
      for (const id of notice.ids) this.remove(proc, Number(id));
      if (notice.messageIds.length > 0) {
        const ids = new Set(notice.messageIds);
        for (const r of [...proc.pending.values()]) if (ids.has(r.messageId)) this.remove(proc, r.id);
      }
    }
    if (proc.pending.size === 0 && !proc.busy) this.drop(proc);
    return true;
  }

  /** How many held records a set of taken ack commands will clear (they free room before they are sent). */
  coveredBy(commands: Record<string, BatchCommand>): number {
    let covered = 0;
    for (const command of Object.values(commands)) {
      if (command.method !== OFFLINE_CLEAR || !command.params) continue;
      const p = command.params as {
        process_id?: unknown;
        id?: unknown;
        message_id?: unknown;
        auth_connector?: unknown;
      };
      if (String(p.auth_connector ?? "") !== this.rules.authConnector) continue;
      const proc = this.held.get(String(p.process_id));
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

  /** Forgets a process and its records (its re-select returned nothing). */
  dropProcess(processId: string): void {
    const proc = this.held.get(processId);
    if (proc) this.drop(proc);
  }

  /** The earliest ack deadline of a process not being re-selected; Infinity when none. */
  nextDue(): number {
    let due = Number.POSITIVE_INFINITY;
    for (const p of this.held.values()) if (!p.busy) due = Math.min(due, p.deliveredAt + this.rules.ackTimeoutMs);
    return due;
  }

  /** Processes whose ack timeout ran out, marked busy for their re-select. */
  takeDue(now: number): HeldProcess[] {
    const due = [...this.held.values()].filter((p) => !p.busy && p.deliveredAt + this.rules.ackTimeoutMs <= now);
    for (const p of due) p.busy = true;
    return due;
  }

  /** A redelivery failed: the processes come due again at `retryAt` (their records stay held meanwhile). */
  postpone(processes: HeldProcess[], retryAt: number): void {
    for (const p of processes) p.deliveredAt = Math.max(p.deliveredAt, retryAt - this.rules.ackTimeoutMs);
  }

  /** The re-select of takeDue's processes is over: those with nothing left are dropped. */
  finishDue(processes: HeldProcess[]): void {
    for (const p of processes) {
      p.busy = false;
      if (p.pending.size === 0 && this.held.get(p.processId) === p) this.drop(p);
    }
  }

  /** The journal's view (a fresh copy: the journal keeps what it is given). */
  snapshot(): JournalProcess[] {
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

  private add(proc: HeldProcess, record: PendingRecord): void {
    if (!proc.pending.has(record.id)) this.pendingCount++;
    proc.pending.set(record.id, record);
  }

  private remove(proc: HeldProcess, id: number): void {
    if (proc.pending.delete(id)) this.pendingCount--;
  }

  private drop(proc: HeldProcess): void {
    for (const id of [...proc.pending.keys()]) this.remove(proc, id);
    this.held.delete(proc.processId);
  }
}

/** One timer for the ledger's earliest ack deadline. */
export class RedeliveryTimer {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ledger: HeldLedger,
    private readonly onDue: () => void,
  ) {}

  /** (Re)arms the timer for the earliest deadline, or after `delayMs` when given. */
  schedule(delayMs?: number): void {
    this.stop();
    const due = this.ledger.nextDue();
    if (!Number.isFinite(due)) return;
    const wait = delayMs ?? Math.max(0, due - Date.now());
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.onDue();
      },
      Math.min(wait, MAX_TIMER_MS),
    );
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

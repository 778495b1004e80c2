import type { OfflineListRecord } from "../rest/types";
import type { ConsumerApi, Tally } from "./consumer-types";

/**
 * The orphan sweep: event.offline.list shows each record's PROCESS_ID, so records held under a process id no
 * consumer here knows (its journal was lost) can be found and, once they stayed so for orphanAgeMs, taken over.
 * This module only finds them; the consumer re-selects them.
 */

const MAX_TIMER_MS = 2_147_483_647;

export interface SweepSettings {
  errorFlag: 0 | 1;
  authConnector: string;
  /** Pages of event.offline.list one sweep reads at most (50 records each). */
  sweepPages: number;
  /** How long a process id must be seen unknown before it is taken over. */
  orphanAgeMs: number;
}

export class OrphanSweep {
  /** Unknown process id → when a sweep first saw it. */
  private readonly firstSeen = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly api: Pick<ConsumerApi, "list">,
    private readonly s: SweepSettings,
  ) {}

  /**
   * Reads the held records and returns the process ids to take over now. `known` is asked after the reads, so a
   * process fetched meanwhile counts as known.
   */
  async findOrphans(known: () => Set<string>, tally: Tally): Promise<string[]> {
    const records: OfflineListRecord[] = [];
    let quietPages = 0;
    for (let page = 0; page < this.s.sweepPages; page++) {
      const answer = await this.api.list({
        filter: { "=ERROR": this.s.errorFlag },
        start: page * 50,
        ...(this.s.authConnector ? { auth_connector: this.s.authConnector } : {}),
      });
      tally.requests++;
      records.push(...answer.records);
      if (answer.next === undefined || answer.records.length === 0) break;
      // Gets take the oldest records first, so held ones cluster at the front: two pages without any = done.
      if (answer.records.some((r) => r.PROCESS_ID)) quietPages = 0;
      else if (++quietPages >= 2) break;
    }
    const knownIds = known();
    const now = Date.now();
    const seenNow = new Set<string>();
    const adopt: string[] = [];
    for (const r of records) {
      const pid = r.PROCESS_ID;
      if (!pid || knownIds.has(pid) || seenNow.has(pid)) continue;
      seenNow.add(pid);
      const first = this.firstSeen.get(pid) ?? now;
      this.firstSeen.set(pid, first);
      if (now - first >= this.s.orphanAgeMs) adopt.push(pid);
    }
    for (const pid of [...this.firstSeen.keys()])
      if (!seenNow.has(pid) || adopt.includes(pid)) this.firstSeen.delete(pid);
    return adopt;
  }

  /** Sweeps again every `everyMs` (the ack timeout) until stop(). */
  repeat(everyMs: number, sweep: () => void): void {
    if (this.timer) return;
    this.timer = setInterval(sweep, Math.min(everyMs, MAX_TIMER_MS));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

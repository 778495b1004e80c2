import type { OfflineListRecord } from "../rest/types";
import type { ConsumerApi, Tally } from "./consumer-types";

/**
 * The orphan sweep: event.offline.list shows each record's PROCESS_ID, so records held under a process id no live
 * consumer knows (a crash between the portal's answer and the journal write, a lost answer) can be found and taken
 * over. This module only finds them; the consumer re-selects them.
 *
 * When may an unknown process id be taken? Its records were held by a get that reached the portal before the list
 * answered. If no live consumer of the queue (this one, its neighbours in the registry) has a get in flight that
 * started before then, and none of them names the process id afterwards, nobody alive can own it: it is taken at
 * once. Otherwise the sweep says so (`deferred`) and the caller looks again shortly. Only when the user declared
 * consumers the registry cannot see (another program, another machine: `ageRule`) does the old rule hold: taken
 * once seen unknown for orphanAgeMs, longer than a live consumer keeps a record without acking it.
 */

/** What the live consumers of the queue hold, asked AFTER the list was read. */
export interface Owners {
  /** Process ids some live consumer of the queue holds or will re-select. */
  known: Set<string>;
  /** Start of the oldest get still in flight among them (epoch ms), if any. */
  fetchingSince?: number;
}

const MAX_TIMER_MS = 2_147_483_647;

export interface SweepSettings {
  errorFlag: 0 | 1;
  authConnector: string;
  /** Pages of event.offline.list one sweep reads at most (50 records each). */
  sweepPages: number;
  /** How long a process id must be seen unknown before it is taken over, under the age rule. */
  orphanAgeMs: number;
  /** Consumers the registry cannot see may drain the queue: only the age rule may take a process id. */
  ageRule: boolean;
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
   * Reads the held records and returns the process ids to take over now; `deferred` when some unknown one may
   * still be a live consumer's get in flight (look again soon). `owners` is asked after the reads.
   */
  async findOrphans(
    owners: () => Promise<Owners>,
    tally: Tally,
  ): Promise<{ adopt: string[]; deferred: boolean; sizes: Map<string, number> }> {
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
    const listedAt = Date.now();
    const { known, fetchingSince } = await owners();
    // A get that started before the list answered may have held what it shows, its process id not yet journaled.
    const settled = fetchingSince === undefined || fetchingSince > listedAt;
    const now = Date.now();
    const seenNow = new Set<string>();
    // Records seen per process id: the re-select's limit (an orphan's batch size is in no journal).
    const sizes = new Map<string, number>();
    for (const r of records) if (r.PROCESS_ID) sizes.set(r.PROCESS_ID, (sizes.get(r.PROCESS_ID) ?? 0) + 1);
    const adopt: string[] = [];
    let deferred = false;
    for (const r of records) {
      const pid = r.PROCESS_ID;
      if (!pid || known.has(pid) || seenNow.has(pid)) continue;
      seenNow.add(pid);
      const first = this.firstSeen.get(pid) ?? now;
      this.firstSeen.set(pid, first);
      if (this.s.ageRule ? now - first >= this.s.orphanAgeMs : settled) adopt.push(pid);
      else if (!this.s.ageRule) deferred = true;
    }
    for (const pid of [...this.firstSeen.keys()])
      if (!seenNow.has(pid) || adopt.includes(pid)) this.firstSeen.delete(pid);
    return { adopt, deferred, sizes };
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

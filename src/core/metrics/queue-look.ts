import { summarizeQueue } from "../queue/queue-summary";
import type { OfflineListPage } from "../rest/types";
import type { PortalMetrics } from "./portal-metrics";

/** At most one event.offline.list a minute, and only while someone looks (the sidebar is open). */
export const QUEUE_LOOK_EVERY_MS = 60_000;

/**
 * The queue's depth for the sidebar: one page of event.offline.list, through the portal's client and so through
 * its bucket like every other call. It is asked for, never run on a timer of its own: the sidebar asks while it
 * is open, so a Node-RED nobody watches spends no request on it.
 */
export class QueueLook {
  private running: Promise<void> | undefined;

  constructor(
    private readonly metrics: PortalMetrics,
    private readonly list: () => Promise<OfflineListPage>,
    private readonly everyMs = QUEUE_LOOK_EVERY_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Looks when the last look is older than `everyMs` and none runs; failures land in the recent errors. */
  maybeLook(): Promise<void> {
    if (this.running || this.now() - this.metrics.lastQueueLook < this.everyMs)
      return this.running ?? Promise.resolve();
    this.running = this.look().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async look(): Promise<void> {
    try {
      const page = await this.list();
      const summary = summarizeQueue(page.records, page.total);
      this.metrics.queueLook({
        total: summary.total,
        counted: summary.counted,
        unprocessed: summary.unprocessed,
        held: summary.held,
        error: summary.error,
      });
    } catch (err) {
      const e = err as { code?: unknown; method?: unknown; message?: unknown };
      this.metrics.error({
        code: typeof e.code === "string" ? e.code : "INTERNAL_ERROR",
        method: typeof e.method === "string" ? e.method : "event.offline.list",
        message: typeof e.message === "string" ? e.message : String(err),
      });
      // a failed look is not tried again every second: the next one waits its minute too
      this.metrics.queueLookFailed();
    }
  }
}

import type { OpsSnapshot } from "../../core/metrics/portal-metrics";
import { opsPortals } from "../../nodes/shared/ops-hub";

/** What an editor gets: the portals in use, each with its series from `sinceSecond` on. */
export interface OpsUpdate {
  at: number;
  portals: OpsSnapshot[];
}

export function opsUpdate(sinceSecond: number, now = Date.now()): OpsUpdate {
  return { at: now, portals: opsPortals().map((p) => p.metrics.snapshot(sinceSecond)) };
}

export interface OpsFeedOptions {
  publish(update: OpsUpdate): void;
  /** A lease lasts this long after an editor's last word. */
  leaseMs: number;
  everyMs: number;
  /** Seconds of series each push carries: an editor that missed a push still gets every second. */
  pushSeconds: number;
}

/**
 * Publishes the portals' numbers every `everyMs` while an editor holds a lease (its Bitrix24 tab is open), and
 * asks each portal for its queue look (which itself runs at most once a minute). Without a lease no timer runs:
 * a Node-RED nobody watches publishes nothing and sends no event.offline.list.
 */
export class OpsFeed {
  private leaseUntil = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: OpsFeedOptions) {}

  /** An editor looks (opened the tab, or renews its lease). */
  watch(): void {
    this.leaseUntil = Date.now() + this.o.leaseMs;
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.o.everyMs);
    this.timer.unref();
    this.tick();
  }

  get watched(): boolean {
    return this.timer !== undefined;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (Date.now() > this.leaseUntil) {
      this.stop();
      return;
    }
    for (const portal of opsPortals()) void portal.queueLook.maybeLook();
    this.o.publish(opsUpdate(Math.floor(Date.now() / 1000) - this.o.pushSeconds));
  }
}

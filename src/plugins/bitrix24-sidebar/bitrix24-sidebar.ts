import type { Request, Response } from "express";
import type { NodeAPI } from "node-red";
import type { OpsSnapshot } from "../../core/metrics/portal-metrics";
import { opsPortals } from "../../nodes/shared/ops-hub";

/**
 * The runtime half of the editor's "Bitrix24" sidebar tab (the editor half is bitrix24-sidebar.html).
 *
 * The numbers travel on the editor's own comms channel (the websocket the debug sidebar and node statuses use):
 * once a second, while an editor has the tab open, every portal in use is published on TOPIC. An editor that
 * opens the tab reads the last 15 minutes once (GET SNAPSHOT_PATH), then only listens. "Open" is a lease the
 * editor renews every LEASE_RENEW_MS while the tab shows: when no editor looks, nothing is published and no
 * event.offline.list is sent, so an unwatched Node-RED pays nothing for the view.
 */
export const TOPIC = "bitrix24-ops/update";
export const SNAPSHOT_PATH = "/bitrix24-ops/snapshot";
export const WATCH_PATH = "/bitrix24-ops/watch";
/** A lease lasts this long after the editor's last word; the editor renews it well before (every 15 s). */
export const LEASE_MS = 40_000;
const PUBLISH_EVERY_MS = 1000;
/** Each push carries the last seconds of the series: an editor that missed a push still gets every second. */
const PUSH_SECONDS = 5;

/** What an editor gets: the portals in use, each with its series from `sinceSecond` on. */
export function opsUpdate(sinceSecond: number): { at: number; portals: OpsSnapshot[] } {
  return { at: Date.now(), portals: opsPortals().map((p) => p.metrics.snapshot(sinceSecond)) };
}

export default function register(RED: NodeAPI): void {
  let leaseUntil = 0;
  let timer: NodeJS.Timeout | undefined;

  const tick = () => {
    if (Date.now() > leaseUntil) {
      clearInterval(timer);
      timer = undefined;
      return;
    }
    const portals = opsPortals();
    // the queue's depth: at most one event.offline.list a minute per portal, charged to its bucket
    for (const portal of portals) void portal.queueLook.maybeLook();
    RED.comms.publish(TOPIC, opsUpdate(Math.floor(Date.now() / 1000) - PUSH_SECONDS), false);
  };

  const watch = () => {
    leaseUntil = Date.now() + LEASE_MS;
    if (!timer) {
      timer = setInterval(tick, PUBLISH_EVERY_MS);
      timer.unref();
      tick();
    }
  };

  RED.plugins.registerPlugin("bitrix24-sidebar", { type: "bitrix24-ops" });

  // Who may read the flows may read their numbers (no secret is in them).
  RED.httpAdmin.get(SNAPSHOT_PATH, RED.auth.needsPermission("flows.read"), (_req: Request, res: Response) => {
    watch();
    res.json(opsUpdate(0));
  });
  RED.httpAdmin.post(WATCH_PATH, RED.auth.needsPermission("flows.read"), (_req: Request, res: Response) => {
    watch();
    res.status(204).end();
  });
}

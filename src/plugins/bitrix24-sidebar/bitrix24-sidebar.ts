import type { Request, Response } from "express";
import type { NodeAPI } from "node-red";
import { OpsFeed, opsUpdate } from "./ops-feed";

/**
 * The runtime half of the editor's "Bitrix24" sidebar tab (the editor half is bitrix24-sidebar.html).
 *
 * The numbers travel on the editor's own comms channel (the websocket the debug sidebar and node statuses use):
 * once a second, while an editor has the tab open, every portal in use is published on TOPIC. An editor that
 * opens the tab reads the last 15 minutes once (GET SNAPSHOT_PATH), then only listens. "Open" is a lease the
 * editor renews every 15 s while the tab shows (POST WATCH_PATH): when no editor looks, nothing is published and
 * no event.offline.list is sent, so an unwatched Node-RED pays nothing for the view (ops-feed.ts).
 */
export const TOPIC = "bitrix24-ops/update";
export const SNAPSHOT_PATH = "/bitrix24-ops/snapshot";
export const WATCH_PATH = "/bitrix24-ops/watch";

export default function register(RED: NodeAPI): void {
  const feed = new OpsFeed({
    publish: (update) => RED.comms.publish(TOPIC, update, false),
    leaseMs: 40_000,
    everyMs: 1000,
    pushSeconds: 5,
  });

  RED.plugins.registerPlugin("bitrix24-sidebar", { type: "bitrix24-ops" });

  // Who may read the flows may read their numbers (no secret is in them).
  RED.httpAdmin.get(SNAPSHOT_PATH, RED.auth.needsPermission("flows.read"), (_req: Request, res: Response) => {
    feed.watch();
    res.json(opsUpdate(0));
  });
  RED.httpAdmin.post(WATCH_PATH, RED.auth.needsPermission("flows.read"), (_req: Request, res: Response) => {
    feed.watch();
    res.status(204).end();
  });
}

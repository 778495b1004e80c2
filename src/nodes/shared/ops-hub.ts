import { reportError } from "../../core/metrics/feed";
import type { PortalMetrics } from "../../core/metrics/portal-metrics";
import type { QueueLook } from "../../core/metrics/queue-look";
import type { Bitrix24Error } from "../../core/rest/errors";

/**
 * Where the portal config nodes of this Node-RED put their operations numbers for the editor's Bitrix24 sidebar
 * (src/plugins/bitrix24-sidebar). The plugin and the nodes are loaded from files of this package beside each
 * other, so they share this module; a redeployed portal node replaces its entry under the same id.
 */
export interface OpsPortal {
  id: string;
  metrics: PortalMetrics;
  queueLook: QueueLook;
  /** True while some deployed node names this portal: the sidebar shows only portals in use. */
  inUse(): boolean;
  /** True when the deployed node `nodeId` names this portal. */
  owns(nodeId: string): boolean;
}

const portals = new Map<string, OpsPortal>();

export function addOpsPortal(portal: OpsPortal): () => void {
  portals.set(portal.id, portal);
  return () => {
    if (portals.get(portal.id) === portal) portals.delete(portal.id);
  };
}

export function opsPortals(): OpsPortal[] {
  return [...portals.values()].filter((p) => p.inUse());
}

/**
 * A failure a node of ours reported (error-report.ts): into the recent errors of the portal it uses, where the
 * sidebar lists it with a link to the node. Nodes without a portal, or of a portal not deployed, are skipped.
 */
export function reportNodeError(node: { id: string; name?: string }, err: Bitrix24Error): void {
  for (const portal of portals.values()) {
    if (portal.owns(node.id)) reportError(portal.metrics, { id: node.id, name: node.name ?? "" }, err);
  }
}

import type { PortalMetrics } from "../../core/metrics/portal-metrics";
import type { QueueLook } from "../../core/metrics/queue-look";

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

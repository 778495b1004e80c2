import type { NodeAPI } from "node-red";

/**
 * How long a close handler may wait for work in flight: two thirds of Node-RED's nodeCloseTimeout (default
 * 15 s), so it ends on its own, with room to spare, before Node-RED gives up on it and logs "Close timed out".
 */
export function closeWaitMs(RED: NodeAPI): number {
  const limit = Number((RED.settings as { nodeCloseTimeout?: unknown }).nodeCloseTimeout);
  return ((Number.isFinite(limit) && limit > 0 ? limit : 15000) * 2) / 3;
}

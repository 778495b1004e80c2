import type { Node, NodeAPI, NodeDef } from "node-red";
import type { AckQueue, AckTarget } from "../../core/acks/ack-queue";
import { CLEAR_BY, type ClearBy, clearTargets } from "../../core/acks/ack-targets";
import type { PortalNode } from "../bitrix24-portal/bitrix24-portal";
import { holdMsOf, runAckNode } from "../shared/ack-node";

const TYPE = "bitrix24-offline-clear";

export interface ClearConfig extends NodeDef {
  portal: string;
  /** `id` (default) | `message_id` | `process` (every record of the msg's process: only by explicit choice). */
  by?: string;
  /** Extra ms to gather slow-arriving acks before the queue's own few-ms window; 0 = none. */
  coalesceMs?: string | number;
}

export function clearByOf(value: unknown): ClearBy {
  return CLEAR_BY.includes(value as ClearBy) ? (value as ClearBy) : "id";
}

export default function register(RED: NodeAPI): void {
  function Bitrix24OfflineClearNode(this: Node, config: ClearConfig) {
    RED.nodes.createNode(this, config);
    const portal = RED.nodes.getNode(config.portal) as PortalNode | null;
    const by = clearByOf(config.by);
    runAckNode<AckTarget>(RED, this, portal, {
      type: TYPE,
      targets: (msg) => clearTargets(msg, by),
      submit: (acks: AckQueue, target) => acks.clear(target),
      holdMs: holdMsOf(config.coalesceMs),
    });
  }

  RED.nodes.registerType(TYPE, Bitrix24OfflineClearNode);
}

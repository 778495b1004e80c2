import type { Node, NodeAPI, NodeDef } from "node-red";
import type { ErrorTarget } from "../../core/acks/ack-queue";
import { errorTargets } from "../../core/acks/ack-targets";
import type { PortalNode } from "../bitrix24-portal/bitrix24-portal";
import { holdMsOf, runAckNode } from "../shared/ack-node";

const TYPE = "bitrix24-offline-error";

export interface ErrorConfig extends NodeDef {
  portal: string;
  /** Extra ms to gather slow-arriving marks before the queue's own few-ms window; 0 = none. */
  coalesceMs?: string | number;
}

export default function register(RED: NodeAPI): void {
  function Bitrix24OfflineErrorNode(this: Node, config: ErrorConfig) {
    RED.nodes.createNode(this, config);
    const portal = RED.nodes.getNode(config.portal) as PortalNode | null;
    runAckNode<ErrorTarget>(RED, this, portal, {
      type: TYPE,
      targets: (msg) => errorTargets(msg),
      submit: (acks, target) => acks.error(target),
      holdMs: holdMsOf(config.coalesceMs),
    });
  }

  RED.nodes.registerType(TYPE, Bitrix24OfflineErrorNode);
}

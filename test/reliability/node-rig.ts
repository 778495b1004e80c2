import type { PortalNode } from "../../src/nodes/bitrix24-portal/bitrix24-portal";
import type { Sandbox } from "../../src/sandbox";
import { getNode, portalConfig, portalCredentials } from "../kit/flows.cjs";
import {
  blackHoleNode,
  captureHttpNode,
  helper,
  freshUserDir as kitUserDir,
  nodes,
  type SpiedNode,
} from "../kit/node-red";
import { DeliveryBook, FaultCounter } from "./ledger";

export { portalConfig } from "../kit/flows.cjs";
// The reliability rig: the kit's Node-RED (test/kit) plus the delivery book of ledger.ts.
export {
  blackHoleNode,
  callsOf,
  captureHttpNode,
  helper,
  lastStatus,
  nodes,
  removeDir,
  type SpiedNode,
  type StatusArg,
  startHttpNodeServer,
  statusesOf,
} from "../kit/node-red";

/** A fresh user directory with the HTTP node root the trigger and installation endpoints need. */
export function freshUserDir(): string {
  return kitUserDir({ httpNodeRoot: "/" });
}

export const GET_DEFAULTS = getNode({ prefetch: 1, allowAtMostOnce: false, orphanSweep: false });

export interface LoadedFlow {
  book: DeliveryBook;
  counter: FaultCounter;
  portal: PortalNode;
  get: SpiedNode;
  /** Msgs that reached each helper node, by id. */
  seen: Record<string, Array<Record<string, unknown>>>;
}

/**
 * Loads a flow (portal "p" + the given nodes), watches the portal's client for faults and token requests, and
 * books deliveries (msgs into helper "out") and acks (msgs into helper "acked") by record id.
 */
export async function loadFlow(
  sandbox: Sandbox,
  flow: Array<Record<string, unknown>>,
  options: {
    portal?: Record<string, unknown>;
    credentials?: Record<string, string>;
    book?: DeliveryBook;
    /** Output 1 of the get node also feeds a clear node: every msg into "out" is an ack the flow asks for. */
    clearWired?: boolean;
  } = {},
): Promise<LoadedFlow> {
  const all = [portalConfig(sandbox, options.portal), ...flow] as Parameters<typeof helper.load>[1];
  await helper.load(
    [nodes.portal, nodes.get, nodes.clear, nodes.error, nodes.trigger, nodes.list, blackHoleNode, captureHttpNode],
    all,
    { p: portalCredentials(sandbox, options.credentials) },
  );
  const portal = helper.getNode("p") as unknown as PortalNode;
  const counter = new FaultCounter();
  if (portal.client) counter.watch(portal.client);
  const book = options.book ?? new DeliveryBook();
  const seen: LoadedFlow["seen"] = {};
  for (const n of flow) {
    if (n.type !== "helper") continue;
    const id = String(n.id);
    seen[id] = [];
    helper.getNode(id).on("input", (msg: Record<string, unknown>) => {
      seen[id].push(msg);
      const meta = msg.bitrix24 as { id?: number } | undefined;
      if (id === "out" && meta?.id) {
        book.deliver(meta.id);
        if (options.clearWired) book.request(meta.id);
      }
      if (id === "acked" && meta?.id) book.ack(meta.id);
    });
  }
  return { book, counter, portal, get: helper.getNode("g") as unknown as SpiedNode, seen };
}

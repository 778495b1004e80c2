import type { OfflineGetResult } from "../../src/core/rest/types";
import type { EventMessage } from "../../src/nodes/shared/msg-contract";

/** What a get node emits (msg-contract.ts), made from a get's records: for tests of the nodes downstream of it. */

/** One msg per event, as bitrix24-offline-get emits them. */
export function eventMsgs(
  got: OfflineGetResult,
  options: { authConnector?: string; error?: 0 | 1 } = {},
): EventMessage[] {
  const size = got.events.length;
  return got.events.map((event, index) => ({
    payload: event,
    topic: event.EVENT_NAME,
    bitrix24: {
      portal: "127.0.0.1",
      processId: got.process_id,
      authConnector: options.authConnector ?? "",
      id: Number(event.ID),
      messageId: event.MESSAGE_ID,
      error: options.error ?? 0,
      deliveryCount: 1,
      redelivered: false,
      batch: { index, size },
    },
  }));
}

/** One msg for the whole batch (the get node's output "batch"). */
export function batchMsg(got: OfflineGetResult): EventMessage {
  return {
    payload: got.events,
    topic: "",
    bitrix24: {
      portal: "127.0.0.1",
      processId: got.process_id,
      authConnector: "",
      id: 0,
      messageId: "",
      error: 0,
      deliveryCount: 1,
      redelivered: false,
      batch: { index: 0, size: got.events.length },
    },
  };
}

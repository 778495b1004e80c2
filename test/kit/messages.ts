import type { OfflineGetResult } from "../../src/core/rest/types";
import type { Bitrix24Meta, EventMessage } from "../../src/nodes/shared/msg-contract";

/** What a get node emits (msg-contract.ts), made from a get's records: for tests of the nodes downstream of it. */

/** A msg as a node downstream of the get node passes it on, or as Catch hands it over. */
export interface OutMsg extends EventMessage {
  _tag?: string;
  error?: { message: string; code?: string };
}

/** A msg.bitrix24 of a first delivery, alone in its batch, from the sandbox's portal; `over` wins. */
export function bitrix24Meta(over: Partial<Bitrix24Meta> = {}): Bitrix24Meta {
  return {
    portal: "127.0.0.1",
    processId: null,
    authConnector: "",
    id: 0,
    messageId: "",
    error: 0,
    deliveryCount: 1,
    redelivered: false,
    batch: { index: 0, size: 1 },
    ...over,
  };
}

/** One msg per event, as bitrix24-offline-get emits them. */
export function eventMsgs(
  got: OfflineGetResult,
  options: { authConnector?: string; error?: 0 | 1 } = {},
): EventMessage[] {
  const size = got.events.length;
  return got.events.map((event, index) => ({
    payload: event,
    topic: event.EVENT_NAME,
    bitrix24: bitrix24Meta({
      processId: got.process_id,
      authConnector: options.authConnector ?? "",
      id: Number(event.ID),
      messageId: event.MESSAGE_ID,
      error: options.error ?? 0,
      batch: { index, size },
    }),
  }));
}

/** One msg for the whole batch (the get node's output "batch"). */
export function batchMsg(got: OfflineGetResult): EventMessage {
  return {
    payload: got.events,
    topic: "",
    bitrix24: bitrix24Meta({ processId: got.process_id, batch: { index: 0, size: got.events.length } }),
  };
}

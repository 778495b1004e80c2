import type { DeliveryChanges } from "../../core/changes/change-tracker";
import type { DeliveryGroup } from "../../core/consumer/consumer-types";
import type { EntityAttachment } from "../../core/entities/entity-reads";
import type { OfflineEvent } from "../../core/rest/types";
import type { Bitrix24Meta, EventMessage } from "../shared/msg-contract";

// The get node's output side: what the consumer delivers becomes msgs of the contract (DESIGN.md, "The msg
// contract"). Kept apart from the node's wiring so the contract can be read, and tested, in one place.

/** msg.entity and what msg.bitrix24 says about it (entity option); nothing for events without a mapped object. */
function entityParts(attachment: EntityAttachment | undefined): {
  entity?: Record<string, unknown> | null;
  meta: Pick<Bitrix24Meta, "entityMissing" | "entityError">;
} {
  if (!attachment) return { meta: {} };
  const meta: Pick<Bitrix24Meta, "entityMissing" | "entityError"> = {};
  if (attachment.missing) meta.entityMissing = true;
  if (attachment.error) meta.entityError = attachment.error;
  return { entity: attachment.entity, meta };
}

/** msg.changes and msg.bitrix24.firstSeen of one event (changes option). */
function addChanges(msg: EventMessage, changes: DeliveryChanges | undefined): void {
  if (!changes) return;
  msg.changes = changes.changes;
  if (changes.firstSeen) msg.bitrix24.firstSeen = true;
}

/** One msg per event (or one per batch) following the msg contract (msg-contract.ts). */
export function deliveryMessages(group: DeliveryGroup, portalHost: string, output: "event" | "batch"): EventMessage[] {
  const size = group.deliveries.length;
  const meta = (over: Pick<Bitrix24Meta, "id" | "messageId" | "deliveryCount" | "redelivered" | "batch">) => ({
    portal: portalHost,
    processId: group.processId,
    authConnector: group.authConnector,
    error: group.error,
    ...over,
  });
  if (output === "batch") {
    const events: OfflineEvent[] = group.deliveries.map((d) => d.event);
    const names = new Set(events.map((e) => e.EVENT_NAME));
    const msg: EventMessage = {
      payload: events,
      topic: names.size === 1 ? events[0].EVENT_NAME : "",
      bitrix24: meta({
        id: 0,
        messageId: "",
        deliveryCount: Math.max(...group.deliveries.map((d) => d.deliveryCount)),
        redelivered: group.deliveries.some((d) => d.redelivered),
        batch: { index: 0, size },
      }),
    };
    if (group.deliveries.some((d) => d.changes)) {
      // Arrays in the order of msg.payload, like msg.entity.
      msg.changes = group.deliveries.map((d) => d.changes?.changes ?? null);
      if (group.deliveries.some((d) => d.changes?.firstSeen)) {
        msg.bitrix24.firstSeen = group.deliveries.map((d) => d.changes?.firstSeen === true);
      }
    }
    if (group.deliveries.some((d) => d.entity)) {
      // Arrays in the order of msg.payload: one entry per event.
      msg.entity = group.deliveries.map((d) => d.entity?.entity ?? null);
      if (group.deliveries.some((d) => d.entity?.missing)) {
        msg.bitrix24.entityMissing = group.deliveries.map((d) => d.entity?.missing === true);
      }
      if (group.deliveries.some((d) => d.entity?.error)) {
        msg.bitrix24.entityError = group.deliveries.map((d) => d.entity?.error ?? null);
      }
    }
    return [msg];
  }
  return group.deliveries.map((d, index) => {
    const { entity, meta: entityMeta } = entityParts(d.entity);
    const msg: EventMessage = {
      payload: d.event,
      topic: d.event.EVENT_NAME,
      bitrix24: {
        ...meta({
          id: d.id,
          messageId: d.event.MESSAGE_ID,
          deliveryCount: d.deliveryCount,
          redelivered: d.redelivered,
          batch: { index, size },
        }),
        ...entityMeta,
      },
    };
    if (entity !== undefined) msg.entity = entity;
    addChanges(msg, d.changes);
    return msg;
  });
}

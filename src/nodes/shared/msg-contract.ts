import type { NodeMessage } from "node-red";
import type { Changes } from "../../core/changes/compare";
import type { EntityAttachment } from "../../core/entities/entity-reads";
import type { Bitrix24Error } from "../../core/rest/errors";
import type { OfflineEvent } from "../../core/rest/types";

export type Bitrix24ErrorJson = ReturnType<Bitrix24Error["toJSON"]>;

/**
 * `msg.bitrix24` (DESIGN.md, the msg contract): everything a downstream clear/error node needs.
 * `error` is the record's error flag (0|1) as fetched; when a node fails on the msg it is replaced by the
 * failure's detail {code, status, method, description}, as DESIGN.md specifies.
 */
export interface Bitrix24Meta {
  portal: string;
  processId: string | null;
  authConnector: string;
  id: number;
  messageId: string;
  error: 0 | 1 | Bitrix24ErrorJson;
  deliveryCount: number;
  redelivered: boolean;
  batch: { index: number; size: number };
  /** Set by clear/error nodes once the portal confirmed the ack. */
  acked?: boolean;
  /** Entity option: the object is gone (delete event, or deleted since). Batch msgs: one entry per event. */
  entityMissing?: boolean | boolean[];
  /** Entity option: why the object could not be read {code, status, method, description}. Batch msgs: per event. */
  entityError?: EntityReadError | Array<EntityReadError | null>;
  /** Changes option: no acknowledged state of the object was known (msg.changes is null). Batch msgs: per event. */
  firstSeen?: boolean | boolean[];
}

type EntityReadError = NonNullable<EntityAttachment["error"]>;

export interface EventMessage extends NodeMessage {
  payload: OfflineEvent | OfflineEvent[];
  /** Entity option: the object the event names, as the portal returns it now (null: none); batch msgs: per event. */
  entity?: Record<string, unknown> | null | Array<Record<string, unknown> | null>;
  /** Changes option: `{FIELD: {before, after, beforeLabel?, afterLabel?}}` since the last acked state; batch: per event. */
  changes?: Changes | null | Array<Changes | null>;
  topic?: string;
  bitrix24: Bitrix24Meta;
}

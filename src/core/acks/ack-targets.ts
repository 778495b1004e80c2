import { Bitrix24Error } from "../rest/errors";
import { isJsonObject } from "../rest/json-object";
import type { AckTarget, ErrorTarget } from "./ack-arguments";

/**
 * Reads what a clear/error node should act on from a msg-like object (DESIGN.md, the msg contract), in this order:
 * 1. explicit `msg.ids` / `msg.messageIds` with `msg.processId` (or the process of `msg.bitrix24`);
 * 2. a batch msg: `msg.payload` is the array of events, the process comes from `msg.bitrix24.processId`;
 * 3. a single-event msg: `msg.bitrix24.id` / `msg.bitrix24.messageId`;
 * 4. after a split node (the batch's `msg.bitrix24` has id 0): the per-event `msg.payload.ID` / `MESSAGE_ID`.
 * Ids in `msg.bitrix24` win over `msg.payload` because a flow may put an object of its own with an `ID` (a CRM
 * deal, say) into the payload; acking that id would delete some other record of the process.
 */

/** How a clear node selects records: by record id (default), by MESSAGE_ID, or every record of the process. */
export type ClearBy = "id" | "message_id" | "process";

export const CLEAR_BY: readonly ClearBy[] = ["id", "message_id", "process"];

const NO_PROCESS_ID = "no process id: wire this node after a bitrix24-offline-get in ack mode, or set msg.processId";

interface EventIds {
  ids: number[];
  messageIds: string[];
}

interface Origin {
  processId: string;
  authConnector?: string;
}

function refuse(method: string, description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_ARGUMENT", method, description });
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return isJsonObject(value) ? value : undefined;
}

function present(value: unknown): boolean {
  return value !== undefined && value !== null && value !== "";
}

/** A record id as the portal gives it (a numeric string) or as a number; undefined when it is not one. */
function recordId(value: unknown): number | undefined {
  const n = typeof value === "string" && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function messageId(value: unknown): string | undefined {
  return typeof value === "string" && value.trim().length === 32 ? value.trim() : undefined;
}

function processOf(method: string, msg: Record<string, unknown>): Origin {
  const meta = asRecord(msg.bitrix24);
  const explicit = msg.processId;
  let processId: string;
  if (present(explicit)) {
    if (typeof explicit !== "string" || explicit.trim() === "") {
      throw refuse(method, `msg.processId must be a process id string, got ${JSON.stringify(explicit)}`);
    }
    processId = explicit.trim();
  } else if (meta && typeof meta.processId === "string" && meta.processId.trim() !== "") {
    processId = meta.processId.trim();
  } else {
    const hint =
      meta && meta.processId === null
        ? " (this msg came from a get in auto mode: its events are already deleted, nothing to acknowledge)"
        : "";
    throw refuse(method, `${NO_PROCESS_ID}${hint}`);
  }
  const connector = present(msg.authConnector) ? msg.authConnector : meta?.authConnector;
  if (connector !== undefined && connector !== null && typeof connector !== "string") {
    throw refuse(method, `msg.authConnector must be a string, got ${JSON.stringify(connector)}`);
  }
  const authConnector = typeof connector === "string" && connector.trim() !== "" ? connector.trim() : undefined;
  return authConnector ? { processId, authConnector } : { processId };
}

/** A single id is taken as a list of one. */
function explicitList(value: unknown): unknown[] | undefined {
  if (!present(value)) return undefined;
  return Array.isArray(value) ? value : [value];
}

/** msg.ids / msg.messageIds, checked strictly: a typo must not turn into "nothing to do". */
function explicitIds(method: string, msg: Record<string, unknown>): EventIds | undefined {
  const rawIds = explicitList(msg.ids);
  const rawMessageIds = explicitList(msg.messageIds);
  if (!rawIds && !rawMessageIds) return undefined;
  const ids = (rawIds ?? []).map((item) => {
    const id = recordId(item);
    if (id === undefined) {
      throw refuse(method, `msg.ids must hold positive integer record ids, got ${JSON.stringify(item)}`);
    }
    return id;
  });
  const messageIds = (rawMessageIds ?? []).map((item) => {
    const id = messageId(item);
    if (id === undefined) {
      throw refuse(method, `msg.messageIds must hold 32-character MESSAGE_ID strings, got ${JSON.stringify(item)}`);
    }
    return id;
  });
  return { ids, messageIds };
}

/** The ids of one event record (from a batch payload or a split msg's payload). */
function eventIds(method: string, event: unknown, where: string): { id?: number; messageId?: string } {
  const record = asRecord(event);
  if (!record) throw refuse(method, `${where} is not an event record (an object with ID and MESSAGE_ID)`);
  const id = present(record.ID) ? recordId(record.ID) : undefined;
  const mid = present(record.MESSAGE_ID) ? messageId(record.MESSAGE_ID) : undefined;
  if (present(record.ID) && id === undefined) {
    throw refuse(method, `${where}.ID must be a positive integer record id, got ${JSON.stringify(record.ID)}`);
  }
  if (present(record.MESSAGE_ID) && mid === undefined) {
    throw refuse(
      method,
      `${where}.MESSAGE_ID must be a 32-character MESSAGE_ID, got ${JSON.stringify(record.MESSAGE_ID)}`,
    );
  }
  return { id, messageId: mid };
}

/** The events a msg stands for, from the msg contract's implicit sources (2-4 above). */
function implicitIds(method: string, msg: Record<string, unknown>): Array<{ id?: number; messageId?: string }> {
  if (Array.isArray(msg.payload)) {
    return msg.payload.map((event, i) => eventIds(method, event, `msg.payload[${i}]`));
  }
  const meta = asRecord(msg.bitrix24);
  const id = meta ? recordId(meta.id) : undefined;
  const mid = meta ? messageId(meta.messageId) : undefined;
  if (id !== undefined || mid !== undefined) return [{ id, messageId: mid }];
  const payload = asRecord(msg.payload);
  if (payload && (present(payload.ID) || present(payload.MESSAGE_ID)))
    return [eventIds(method, payload, "msg.payload")];
  throw refuse(
    method,
    "no event to act on: expected msg.bitrix24.id/messageId (a msg from bitrix24-offline-get), msg.payload as an event or an array of events, or msg.ids/msg.messageIds",
  );
}

/**
 * What a bitrix24-offline-clear node acks for this msg. `by` picks the field of the events (record id, falling
 * back to MESSAGE_ID for an event without one, or MESSAGE_ID); "process" clears every record of the msg's
 * process. Explicit msg.ids / msg.messageIds are used as given whatever `by` says.
 */
export function clearTargets(msg: unknown, by: ClearBy = "id"): AckTarget[] {
  const method = "event.offline.clear";
  const m = asRecord(msg);
  if (!m) throw refuse(method, "the msg is not an object");
  if (!CLEAR_BY.includes(by)) throw refuse(method, `by must be one of ${CLEAR_BY.join(", ")}, got ${String(by)}`);
  const origin = processOf(method, m);
  if (by === "process") return [{ ...origin, allOfProcess: true }];

  let found = explicitIds(method, m);
  if (!found) {
    found = { ids: [], messageIds: [] };
    for (const e of implicitIds(method, m)) {
      if (by === "id" && e.id !== undefined) found.ids.push(e.id);
      else if (e.messageId !== undefined) found.messageIds.push(e.messageId);
      else if (e.id !== undefined) found.ids.push(e.id);
    }
  }
  if (found.ids.length === 0 && found.messageIds.length === 0) {
    // Never an empty list: the portal would clear every record of the process.
    throw refuse(method, "no record ids or message ids in the msg (an empty batch, or ids missing): nothing cleared");
  }
  const target: AckTarget = { ...origin };
  if (found.ids.length > 0) target.ids = [...new Set(found.ids)];
  if (found.messageIds.length > 0) target.messageIds = [...new Set(found.messageIds)];
  return [target];
}

/**
 * What a bitrix24-offline-error node marks for this msg. event.offline.error takes MESSAGE_IDs only, and touches
 * only records that are not errors yet: a msg of records fetched with error=1 is refused with advice instead.
 */
export function errorTargets(msg: unknown): ErrorTarget[] {
  const method = "event.offline.error";
  const m = asRecord(msg);
  if (!m) throw refuse(method, "the msg is not an object");
  const meta = asRecord(m.bitrix24);
  if (meta && (meta.error === 1 || meta.error === "1")) {
    throw refuse(
      method,
      "these records were fetched with error=1: they are already marked as errors and the portal cannot mark them again (event.offline.error only touches ERROR=0 records). Store them where you need them, then clear them with bitrix24-offline-clear.",
    );
  }
  const origin = processOf(method, m);
  const explicit = explicitIds(method, m);
  let messageIds: string[];
  if (explicit) {
    if (explicit.messageIds.length === 0 && explicit.ids.length > 0) {
      throw refuse(
        method,
        "msg.ids cannot be used here: event.offline.error marks records by MESSAGE_ID only; give msg.messageIds",
      );
    }
    messageIds = explicit.messageIds;
  } else {
    messageIds = implicitIds(method, m).map((e, i) => {
      if (e.messageId === undefined) {
        throw refuse(method, `event ${i} has no MESSAGE_ID: event.offline.error marks records by MESSAGE_ID only`);
      }
      return e.messageId;
    });
  }
  if (messageIds.length === 0) {
    throw refuse(method, "no message ids in the msg (an empty batch or an empty msg.messageIds): nothing marked");
  }
  return [{ ...origin, messageIds: [...new Set(messageIds)] }];
}

import { Bitrix24Error } from "../rest/errors";

/**
 * What a clear or a failure mark names, and the checks each target passes before it joins a call: the ack
 * queue (ack-queue.ts) takes only targets these accept, so a malformed msg fails alone and never widens a clear.
 */

export const CLEAR = "event.offline.clear";
export const ERROR = "event.offline.error";

/** What to delete from the queue: records of one process, by record id and/or MESSAGE_ID, or all of them. */
export interface AckTarget {
  processId: string;
  authConnector?: string;
  ids?: number[];
  messageIds?: string[];
  /** Clears every record the process holds; only when explicitly asked (never implied by an empty list). */
  allOfProcess?: boolean;
}

/** What to mark as failed (event.offline.error takes MESSAGE_IDs only). */
export interface ErrorTarget {
  processId: string;
  authConnector?: string;
  messageIds: string[];
}

export function invalid(method: string, description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_ARGUMENT", method, description });
}

export function asError(err: unknown, method: string): Bitrix24Error {
  if (err instanceof Bitrix24Error) return err;
  const description = err instanceof Error ? err.message : String(err);
  return new Bitrix24Error({ code: "INTERNAL_SERVER_ERROR", method, description, retryable: false }, { cause: err });
}

function processIdOf(method: string, value: unknown): string {
  if (typeof value !== "string" || value.trim() === "") {
    throw invalid(method, "process_id is required: the records' process id from event.offline.get (clear=0)");
  }
  return value.trim();
}

function connectorOf(method: string, value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw invalid(method, "auth_connector must be a string");
  return value.trim();
}

function recordIds(method: string, value: unknown): number[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(method, "id must be an array of record ids");
  return value.map((item) => {
    const n = typeof item === "string" && /^\d+$/.test(item.trim()) ? Number(item) : item;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n <= 0) {
      throw invalid(method, `id must hold positive integer record ids, got ${JSON.stringify(item)}`);
    }
    return n;
  });
}

function messageIdList(method: string, value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(method, "message_id must be an array of MESSAGE_ID strings");
  return value.map((item) => {
    if (typeof item !== "string" || item.trim().length !== 32) {
      throw invalid(method, `message_id must hold 32-character MESSAGE_ID strings, got ${JSON.stringify(item)}`);
    }
    return item.trim();
  });
}

/** A group coalesces into one call (or chunks of one call): the same process, connector and kind of list. */
export type GroupKind = "id" | "message_id" | "process" | "error";

/** A checked target's share of one group (a clear by id AND message id has two). */
export interface TargetPart {
  kind: GroupKind;
  processId: string;
  connector: string;
  items: Array<string | number>;
}

/** What a clear target asks for, checked; throws a Bitrix24Error for a target that must not be sent. */
export function clearParts(t: AckTarget): TargetPart[] {
  if (typeof t !== "object" || t === null) throw invalid(CLEAR, "an ack target is required");
  const processId = processIdOf(CLEAR, t.processId);
  const connector = connectorOf(CLEAR, t.authConnector);
  if (t.allOfProcess === true) return [{ kind: "process", processId, connector, items: [] }];
  const ids = recordIds(CLEAR, t.ids);
  const messageIds = messageIdList(CLEAR, t.messageIds);
  if (ids.length === 0 && messageIds.length === 0) {
    throw invalid(
      CLEAR,
      "nothing to clear: no record ids and no message ids (an empty list would clear every record of the process; ask for allOfProcess to do that)",
    );
  }
  // id and message_id are never sent together: the portal's docs and source disagree on which one wins.
  const parts: TargetPart[] = [];
  if (ids.length > 0) parts.push({ kind: "id", processId, connector, items: ids });
  if (messageIds.length > 0) parts.push({ kind: "message_id", processId, connector, items: messageIds });
  return parts;
}

/** What an error target asks for, checked (event.offline.error marks records by MESSAGE_ID only). */
export function errorParts(t: ErrorTarget): TargetPart[] {
  if (typeof t !== "object" || t === null) throw invalid(ERROR, "an error target is required");
  const processId = processIdOf(ERROR, t.processId);
  const connector = connectorOf(ERROR, t.authConnector);
  const messageIds = messageIdList(ERROR, t.messageIds);
  if (messageIds.length === 0) {
    throw invalid(ERROR, "nothing to mark: no message ids (event.offline.error marks records by MESSAGE_ID)");
  }
  return [{ kind: "error", processId, connector, items: messageIds }];
}

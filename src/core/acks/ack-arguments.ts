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

export function processIdOf(method: string, value: unknown): string {
  if (typeof value !== "string" || value.trim() === "") {
    throw invalid(method, "process_id is required: the records' process id from event.offline.get (clear=0)");
  }
  return value.trim();
}

export function connectorOf(method: string, value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw invalid(method, "auth_connector must be a string");
  return value.trim();
}

export function recordIds(method: string, value: unknown): number[] {
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

export function messageIdList(method: string, value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(method, "message_id must be an array of MESSAGE_ID strings");
  return value.map((item) => {
    if (typeof item !== "string" || item.trim().length !== 32) {
      throw invalid(method, `message_id must hold 32-character MESSAGE_ID strings, got ${JSON.stringify(item)}`);
    }
    return item.trim();
  });
}

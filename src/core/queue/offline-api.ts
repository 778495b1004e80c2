import type { Bitrix24Client } from "../client/client";
import { Bitrix24Error } from "../rest/errors";
import type {
  BatchCommand,
  EventBinding,
  OfflineClearParams,
  OfflineErrorParams,
  OfflineEvent,
  OfflineGetParams,
  OfflineGetResult,
  OfflineListPage,
  OfflineListParams,
  OfflineListRecord,
} from "../rest/types";
import { validateFilter, validateOrder } from "./offline-filter";

export { validateFilter, validateOrder } from "./offline-filter";

/** event.offline.list pages are a fixed 50 records. */
export const LIST_PAGE_SIZE = 50;

export interface BindParams {
  event: string;
  event_type?: "offline" | "online";
  handler?: string;
  auth_connector?: string;
  options?: Record<string, unknown>;
}

export type UnbindParams = Omit<BindParams, "options">;

function refuse(method: string, description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_ARGUMENT", method, description });
}

function malformed(method: string, description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "MALFORMED_ANSWER", method, description });
}

function flag(method: string, name: string, value: unknown): 0 | 1 | undefined {
  if (value === undefined) return undefined;
  if (value === 0 || value === 1) return value;
  throw refuse(method, `${name} must be 0 or 1, got ${JSON.stringify(value)}`);
}

function requiredText(method: string, name: string, value: unknown): string {
  if (typeof value !== "string" || value.trim() === "")
    throw refuse(method, `${name} is required (a non-empty string)`);
  return value.trim();
}

function optionalText(method: string, name: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw refuse(method, `${name} must be a string`);
  return value.trim() || undefined;
}

/** Record ids: positive integers; numeric strings are accepted because the portal returns ID as a string. */
function recordIds(method: string, value: unknown): number[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw refuse(method, "id must be a non-empty array (an empty list would clear every record of the process)");
  }
  const ids = value.map((item) => {
    const n = typeof item === "string" && /^\d+$/.test(item.trim()) ? Number(item) : item;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n <= 0) {
      throw refuse(method, `id must hold positive integers, got ${JSON.stringify(item)}`);
    }
    return n;
  });
  return [...new Set(ids)];
}

/** MESSAGE_ID values: the portal checks for 32-character strings (md5 of the event). */
function messageIds(method: string, value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw refuse(
      method,
      "message_id must be a non-empty array (an empty list would act on every record of the process)",
    );
  }
  const ids = value.map((item) => {
    if (typeof item !== "string" || item.trim().length !== 32) {
      throw refuse(method, `message_id must hold 32-character MESSAGE_ID strings, got ${JSON.stringify(item)}`);
    }
    return item.trim();
  });
  return [...new Set(ids)];
}

/** The checked filter and order of a get or list, each only when it names something (the portal's default else). */
function filterAndOrder(p: { filter?: unknown; order?: unknown }, forList: boolean): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  const filter = validateFilter(p.filter, forList);
  const order = validateOrder(p.order, forList);
  if (Object.keys(filter).length > 0) params.filter = filter;
  if (Object.keys(order).length > 0) params.order = order;
  return params;
}

function setIfDefined(target: Record<string, unknown>, key: string, value: unknown): void {
  if (value !== undefined) target[key] = value;
}

/** Reads an event.offline.get result (also from a batch outcome). */
export function parseGetResult(result: unknown): OfflineGetResult {
  const method = "event.offline.get";
  if (typeof result !== "object" || result === null) throw malformed(method, "the result is not an object");
  const r = result as Record<string, unknown>;
  const events = r.events === undefined || r.events === null ? [] : r.events;
  if (!Array.isArray(events)) throw malformed(method, "result.events is not a list");
  const processId = typeof r.process_id === "string" && r.process_id !== "" ? r.process_id : null;
  return { process_id: processId, events: events as OfflineEvent[] };
}

/** clear and error answer `true`. */
export function parseBooleanResult(result: unknown): boolean {
  return result === true || result === 1 || result === "1" || result === "Y";
}

/**
 * Typed wrappers of the offline-event methods, with parameter names exactly as the method pages (seeds) name
 * them. Everything that would make the portal do something drastic — an empty id list clears a whole process,
 * id together with message_id is read differently by docs and source — is refused here, before any HTTP.
 */
export class OfflineEventsApi {
  constructor(readonly client: Bitrix24Client) {}

  getCommand(p: OfflineGetParams = {}): BatchCommand {
    const method = "event.offline.get";
    const params = filterAndOrder(p, false);
    if (p.limit !== undefined) {
      if (!Number.isSafeInteger(p.limit) || p.limit <= 0) {
        throw refuse(method, `limit must be a positive integer, got ${JSON.stringify(p.limit)}`);
      }
      params.limit = p.limit;
    }
    setIfDefined(params, "clear", flag(method, "clear", p.clear));
    setIfDefined(params, "error", flag(method, "error", p.error));
    if (p.process_id !== undefined) params.process_id = requiredText(method, "process_id", p.process_id);
    setIfDefined(params, "auth_connector", optionalText(method, "auth_connector", p.auth_connector));
    return { method, params };
  }

  clearCommand(p: OfflineClearParams): BatchCommand {
    const method = "event.offline.clear";
    if (typeof p !== "object" || p === null) throw refuse(method, "parameters are required");
    const params: Record<string, unknown> = { process_id: requiredText(method, "process_id", p.process_id) };
    const hasId = p.id !== undefined && p.id !== null;
    const hasMessageId = p.message_id !== undefined && p.message_id !== null;
    if (hasId && hasMessageId) {
      throw refuse(
        method,
        "give either id or message_id, never both (the portal's docs and source disagree on which wins)",
      );
    }
    if (hasId) params.id = recordIds(method, p.id);
    if (hasMessageId) params.message_id = messageIds(method, p.message_id);
    setIfDefined(params, "auth_connector", optionalText(method, "auth_connector", p.auth_connector));
    return { method, params };
  }

  errorCommand(p: OfflineErrorParams): BatchCommand {
    const method = "event.offline.error";
    if (typeof p !== "object" || p === null) throw refuse(method, "parameters are required");
    const params: Record<string, unknown> = {
      process_id: requiredText(method, "process_id", p.process_id),
      message_id: messageIds(method, p.message_id),
    };
    setIfDefined(params, "auth_connector", optionalText(method, "auth_connector", p.auth_connector));
    return { method, params };
  }

  async get(p: OfflineGetParams = {}): Promise<OfflineGetResult> {
    const command = this.getCommand(p);
    const answer = await this.client.call<unknown>(command.method, command.params);
    return parseGetResult(answer.result);
  }

  async clear(p: OfflineClearParams): Promise<boolean> {
    const command = this.clearCommand(p);
    const answer = await this.client.call<unknown>(command.method, command.params);
    return parseBooleanResult(answer.result);
  }

  async error(p: OfflineErrorParams): Promise<boolean> {
    const command = this.errorCommand(p);
    const answer = await this.client.call<unknown>(command.method, command.params);
    return parseBooleanResult(answer.result);
  }

  async list(p: OfflineListParams = {}): Promise<OfflineListPage> {
    const method = "event.offline.list";
    const params = filterAndOrder(p, true);
    if (p.start !== undefined) {
      if (!Number.isSafeInteger(p.start) || p.start < 0) {
        throw refuse(method, `start must be a non-negative integer ((page - 1) * ${LIST_PAGE_SIZE})`);
      }
      params.start = p.start;
    }
    setIfDefined(params, "auth_connector", optionalText(method, "auth_connector", p.auth_connector));
    const answer = await this.client.call<unknown>(method, params);
    const records = answer.result ?? [];
    if (!Array.isArray(records)) throw malformed(method, "the result is not a list of records");
    const page: OfflineListPage = {
      records: records as OfflineListRecord[],
      total: answer.total ?? records.length,
    };
    if (answer.next !== undefined) page.next = answer.next;
    return page;
  }

  /** Every page of event.offline.list, following `next`. */
  async listAll(p: Omit<OfflineListParams, "start"> = {}): Promise<OfflineListRecord[]> {
    const records: OfflineListRecord[] = [];
    let start = 0;
    for (;;) {
      const page = await this.list({ ...p, start });
      records.push(...page.records);
      // A portal that repeats a page would otherwise loop forever.
      if (page.next === undefined || page.next <= start || page.records.length === 0) return records;
      start = page.next;
    }
  }

  async bind(p: BindParams): Promise<boolean> {
    const method = "event.bind";
    const params = this.bindingParams(method, p);
    if (p.options !== undefined) {
      if (typeof p.options !== "object" || p.options === null || Array.isArray(p.options)) {
        throw refuse(method, "options must be an object, e.g. {minTimeout: 1}");
      }
      params.options = p.options;
    }
    const answer = await this.client.call<unknown>(method, params);
    return parseBooleanResult(answer.result);
  }

  /** Returns how many bindings were removed. */
  async unbind(p: UnbindParams): Promise<number> {
    const method = "event.unbind";
    const answer = await this.client.call<unknown>(method, this.bindingParams(method, p));
    const result = answer.result;
    const count =
      typeof result === "object" && result !== null
        ? Number((result as Record<string, unknown>).count)
        : Number(result);
    if (!Number.isFinite(count)) throw malformed(method, "the result has no count");
    return count;
  }

  /** event.get: the application's bindings. */
  async bindings(): Promise<EventBinding[]> {
    const method = "event.get";
    const answer = await this.client.call<unknown>(method, {});
    const result = answer.result ?? [];
    if (!Array.isArray(result)) throw malformed(method, "the result is not a list of bindings");
    return result.map((item: Record<string, unknown>) => {
      const binding: EventBinding = {
        event: String(item.event ?? ""),
        offline: Number(item.offline) === 1 ? 1 : 0,
      };
      if (typeof item.handler === "string") binding.handler = item.handler;
      if (typeof item.auth_type === "string" || typeof item.auth_type === "number") {
        binding.auth_type = String(item.auth_type);
      }
      if (typeof item.connector_id === "string") binding.connector_id = item.connector_id;
      return binding;
    });
  }

  /**
   * feature.get: true when the portal answers "Y", false for "N". On-premise portals without a feature check
   * answer "<lang>_selfhosted": they have no plan limits, so that counts as available. Any other answer is
   * undefined, "not known": a shape we have not seen must not switch a feature off; the portal's own refusal
   * of the feature's methods decides then.
   */
  async feature(code: string): Promise<boolean | undefined> {
    const method = "feature.get";
    const answer = await this.client.call<unknown>(method, { CODE: requiredText(method, "code", code) });
    const result = answer.result;
    const value =
      typeof result === "object" && result !== null ? (result as Record<string, unknown>).value : (result as unknown);
    if (value === true || value === 1) return true;
    if (value === false || value === 0) return false;
    if (typeof value !== "string") return undefined;
    if (value.toUpperCase() === "Y" || value.endsWith("_selfhosted")) return true;
    return value.toUpperCase() === "N" ? false : undefined;
  }

  private bindingParams(method: string, p: UnbindParams): Record<string, unknown> {
    if (typeof p !== "object" || p === null) throw refuse(method, "parameters are required");
    const params: Record<string, unknown> = { event: requiredText(method, "event", p.event) };
    if (p.event_type !== undefined) {
      if (p.event_type !== "offline" && p.event_type !== "online") {
        throw refuse(method, `event_type must be "offline" or "online", got ${JSON.stringify(p.event_type)}`);
      }
      params.event_type = p.event_type;
    }
    const handler = optionalText(method, "handler", p.handler);
    if (method === "event.bind" && p.event_type !== "offline" && !handler) {
      throw refuse(method, "handler (a URL) is required unless event_type is offline");
    }
    setIfDefined(params, "handler", handler);
    setIfDefined(params, "auth_connector", optionalText(method, "auth_connector", p.auth_connector));
    return params;
  }
}

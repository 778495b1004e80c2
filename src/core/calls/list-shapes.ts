import { Bitrix24Error } from "../rest/errors";

/** Records per page of the list methods (each method page: "the page size is always 50"). */
export const PAGE_SIZE = 50;

/**
 * How a list method can be walked by ID: where its records sit in `result`, how its records and its
 * filter/order/select name the ID, how it is sorted, and whether `start=-1` (no count) is documented for it.
 */
export interface CursorShape {
  /** Key of the records in `result` ("" = `result` is the array). */
  recordsKey: "" | "tasks" | "items";
  /** The ID field of a record as the answer spells it. */
  recordId: string;
  /** The ID field as filter, order and select spell it. */
  queryId: string;
  /** `object`: `order: {ID: "ASC"}`; `sort`: user.get's `sort: "ID", order: "ASC"` strings. */
  orderStyle: "object" | "sort";
  /** The parameter that holds the filter. */
  filterParam: string;
  /** Whether `start=-1` (skip the count) is documented for the method. */
  noCount: boolean;
  /** Whether the method takes `select` (so the ID must be in it). */
  select: boolean;
}

const CRM: CursorShape = {
  recordsKey: "",
  recordId: "ID",
  queryId: "ID",
  orderStyle: "object",
  filterParam: "filter",
  noCount: true,
  select: true,
};

// The methods walked by ID (REFERENCE.md "Doing the work"); others are read with counted pages.
const CURSOR_SHAPES: Readonly<Record<string, CursorShape>> = {
  "crm.deal.list": CRM,
  "crm.lead.list": CRM,
  "crm.contact.list": CRM,
  "crm.company.list": CRM,
  "crm.item.list": { ...CRM, recordsKey: "items", recordId: "id", queryId: "id" },
  "tasks.task.list": { ...CRM, recordsKey: "tasks", recordId: "id" },
  // user.get's page documents neither start=-1 nor select; users are few, so the count per page is cheap.
  "user.get": { ...CRM, orderStyle: "sort", filterParam: "FILTER", noCount: false, select: false },
};

export function cursorShape(method: string): CursorShape | undefined {
  return CURSOR_SHAPES[method.trim().toLowerCase()];
}

/** Where an unknown method keeps its records, learnt from its first page: "" = result is the array. */
export function recordsKeyOf(result: unknown): string | undefined {
  if (Array.isArray(result)) return "";
  if (typeof result !== "object" || result === null) return undefined;
  const arrays = Object.entries(result).filter(([, v]) => Array.isArray(v));
  return arrays.length === 1 ? arrays[0][0] : undefined;
}

/** The records of one page, or undefined when the answer does not have that shape. */
export function pageRecords(result: unknown, recordsKey: string): unknown[] | undefined {
  if (recordsKey === "") return Array.isArray(result) ? result : emptyPhpArray(result);
  if (typeof result !== "object" || result === null || Array.isArray(result)) return undefined;
  const records = (result as Record<string, unknown>)[recordsKey];
  return Array.isArray(records) ? records : emptyPhpArray(records);
}

// PHP's json_encode gives an empty list as [] but an empty map as {}: an empty page may come as either.
function emptyPhpArray(value: unknown): unknown[] | undefined {
  if (typeof value === "object" && value !== null && Object.keys(value).length === 0) return [];
  return undefined;
}

export function malformedPage(method: string, detail: string): Bitrix24Error {
  return new Bitrix24Error({ code: "MALFORMED_ANSWER", method, description: `a page of ${method}: ${detail}` });
}

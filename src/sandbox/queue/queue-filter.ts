import { isPlainObject } from "../php/param-values";
import type { ParamValue } from "../php/php-params";
import { argumentError } from "../server/rest-error";
import type { QueueRecord } from "./queue-record";

/**
 * The `filter` and `order` arguments of event.offline.get / event.offline.list, validated the way the REST
 * module does (Api/Event.php): keys are `<operator><FIELD>`, the operator is the leading non-letter part,
 * at most two characters; values are scalars.
 */

export type FilterField = "ID" | "TIMESTAMP_X" | "EVENT_NAME" | "MESSAGE_ID" | "PROCESS_ID" | "ERROR";
export const GET_FIELDS: readonly FilterField[] = ["ID", "TIMESTAMP_X", "EVENT_NAME", "MESSAGE_ID"];
export const LIST_FIELDS: readonly FilterField[] = [...GET_FIELDS, "PROCESS_ID", "ERROR"];

type Operator = "=" | "!" | ">" | ">=" | "<" | "<=";
// "" and "!=" are spellings of "=" and "!" the ORM also takes.
const OPERATORS: Readonly<Record<string, Operator>> = {
  "": "=",
  "=": "=",
  "!": "!",
  "!=": "!",
  ">": ">",
  ">=": ">=",
  "<": "<",
  "<=": "<=",
};

export interface Condition {
  field: FilterField;
  op: Operator;
  value: string | number;
}

export interface SortKey {
  field: FilterField;
  desc: boolean;
}

export function parseFilter(raw: ParamValue | undefined, allowed: readonly FilterField[]): Condition[] {
  if (raw === undefined || raw === "" || (Array.isArray(raw) && raw.length === 0)) return [];
  if (!isPlainObject(raw)) throw argumentError("The filter is not an array.");
  const conditions: Condition[] = [];
  for (const [key, value] of Object.entries(raw)) {
    const match = /^([^A-Za-z_]*)(.*)$/.exec(key)!;
    const opText = match[1];
    const field = match[2].toUpperCase() as FilterField;
    if (!allowed.includes(field)) throw argumentError(`Filter field not allowed: ${match[2]}`);
    const op = opText.length <= 2 ? OPERATORS[opText] : undefined;
    if (!op) throw argumentError(`Filter operation not allowed: ${opText}`);
    if (typeof value === "object" && value !== null) {
      throw argumentError(`The value of an argument '${key}' has an invalid type`);
    }
    conditions.push({ field, op, value: normaliseValue(field, value) });
  }
  return conditions;
}

function normaliseValue(field: FilterField, value: string | number | boolean | null): string | number {
  if (field === "ID" || field === "ERROR") {
    const n = Number(value);
    return Number.isFinite(n) ? n : Number.NaN;
  }
  if (field === "TIMESTAMP_X") {
    // ISO 8601 with offset; a number is taken as unix seconds (what PHP would do with an int timestamp).
    if (typeof value === "number") return value;
    const ms = Date.parse(String(value));
    return Number.isFinite(ms) ? Math.floor(ms / 1000) : Number.NaN;
  }
  return value === null ? "" : String(value);
}

export function parseOrder(raw: ParamValue | undefined, allowed: readonly FilterField[]): SortKey[] | null {
  if (raw === undefined || raw === "" || (Array.isArray(raw) && raw.length === 0)) return null;
  if (!isPlainObject(raw)) throw argumentError("The order is not an array.");
  const keys: SortKey[] = [];
  for (const [key, dir] of Object.entries(raw)) {
    const field = key.toUpperCase() as FilterField;
    if (!allowed.includes(field)) throw argumentError(`Order field not allowed: ${key}`);
    const direction = typeof dir === "string" ? dir.toUpperCase() : "";
    if (direction !== "ASC" && direction !== "DESC") throw argumentError("Order direction should be one of {ASC|DESC}");
    keys.push({ field, desc: direction === "DESC" });
  }
  return keys.length ? keys : null;
}

function fieldValue(record: QueueRecord, field: FilterField): string | number {
  switch (field) {
    case "ID":
      return record.id;
    case "TIMESTAMP_X":
      return record.tsSec;
    case "EVENT_NAME":
      return record.eventName;
    case "MESSAGE_ID":
      return record.messageId;
    case "PROCESS_ID":
      return record.processId;
    case "ERROR":
      return record.error;
  }
}

function compare(a: string | number, b: string | number): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  // MySQL's default collation compares text case-insensitively.
  const x = String(a).toUpperCase();
  const y = String(b).toUpperCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

export function matches(record: QueueRecord, conditions: readonly Condition[]): boolean {
  for (const c of conditions) {
    if (typeof c.value === "number" && Number.isNaN(c.value)) return false;
    const diff = compare(fieldValue(record, c.field), c.value);
    switch (c.op) {
      case "=":
        if (diff !== 0) return false;
        break;
      case "!":
        if (diff === 0) return false;
        break;
      case ">":
        if (diff <= 0) return false;
        break;
      case ">=":
        if (diff < 0) return false;
        break;
      case "<":
        if (diff >= 0) return false;
        break;
      case "<=":
        if (diff > 0) return false;
        break;
    }
  }
  return true;
}

/** Ties fall back to the order of the last change (then ID), which is what insertion order gives the fast path. */
export function sorter(keys: readonly SortKey[]): (a: QueueRecord, b: QueueRecord) => number {
  return (a, b) => {
    for (const key of keys) {
      const diff = compare(fieldValue(a, key.field), fieldValue(b, key.field));
      if (diff !== 0) return key.desc ? -diff : diff;
    }
    return a.seq - b.seq || a.id - b.id;
  };
}

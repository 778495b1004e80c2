import { Bitrix24Error } from "../rest/errors";
import type { OfflineFilter, OfflineOrder } from "../rest/types";

/** Fields event.offline.get filters and sorts on; event.offline.list adds PROCESS_ID and ERROR. */
export const GET_FIELDS = ["ID", "TIMESTAMP_X", "EVENT_NAME", "MESSAGE_ID"] as const;
export const LIST_FIELDS = [...GET_FIELDS, "PROCESS_ID", "ERROR"] as const;

/**
 * Operators of the portal's filter syntax with a scalar value (REFERENCE.md: 1-2 characters before the field).
 * Range/list operators (`><`, `@`) need array values, which the offline methods refuse.
 */
export const FILTER_OPERATORS = ["=", "!", "!=", ">", ">=", "<", "<=", "%", "!%"] as const;

const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;

function refuse(what: string, description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_ARGUMENT", description: `${what}: ${description}` });
}

/** Config and msg properties arrive as JSON text or as objects; empty means none. */
function asPlainObject(value: unknown, what: string): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  let parsed = value;
  if (typeof value === "string") {
    if (value.trim() === "") return {};
    try {
      parsed = JSON.parse(value);
    } catch (err) {
      throw refuse(what, `not valid JSON (${(err as Error).message})`);
    }
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw refuse(what, `expected an object such as {"=EVENT_NAME": "ONCRMLEADADD"}, got ${JSON.stringify(parsed)}`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * Checks a filter against what the portal accepts and normalises it: keys `<operator><FIELD>` (a bare FIELD
 * means `=`; field names are upper-cased as the portal does), scalar values, TIMESTAMP_X in ISO 8601 with an
 * offset. Throws INVALID_ARGUMENT naming the bad key, operator or field.
 */
export function validateFilter(filter: unknown, forList = false): OfflineFilter {
  const what = forList ? "event.offline.list filter" : "event.offline.get filter";
  const fields: readonly string[] = forList ? LIST_FIELDS : GET_FIELDS;
  const source = asPlainObject(filter, what);
  const result: OfflineFilter = {};
  for (const [key, value] of Object.entries(source)) {
    const match = /^([^A-Za-z_]*)([A-Za-z_]+)$/.exec(key.trim());
    if (!match) throw refuse(what, `key "${key}" is not <operator><FIELD>, e.g. ">=ID" or "=EVENT_NAME"`);
    const operator = match[1] === "" ? "=" : match[1];
    const field = match[2].toUpperCase();
    if (!fields.includes(field)) {
      throw refuse(what, `field "${match[2]}" in key "${key}" is not filterable; allowed: ${fields.join(", ")}`);
    }
    if (!(FILTER_OPERATORS as readonly string[]).includes(operator)) {
      throw refuse(
        what,
        `operator "${operator}" in key "${key}" is not supported; allowed: ${FILTER_OPERATORS.join(" ")}`,
      );
    }
    if (typeof value === "number") {
      if (!Number.isFinite(value)) throw refuse(what, `value of "${key}" must be a finite number`);
    } else if (typeof value !== "string") {
      throw refuse(
        what,
        `value of "${key}" must be a string or a number (the portal refuses ${Array.isArray(value) ? "arrays" : typeof value})`,
      );
    }
    if (field === "TIMESTAMP_X" && !ISO_WITH_OFFSET.test(String(value))) {
      throw refuse(what, `value of "${key}" must be ISO 8601 with an offset, e.g. 2024-07-18T12:32:31+02:00`);
    }
    if ((field === "ID" || field === "ERROR") && !/^\d+$/.test(String(value))) {
      throw refuse(what, `value of "${key}" must be a non-negative integer`);
    }
    const normalised = `${operator}${field}`;
    if (normalised in result) throw refuse(what, `"${key}" repeats the condition ${normalised}`);
    result[normalised] = value;
  }
  return result;
}

/** Checks `{FIELD: "ASC"|"DESC"}` (case-insensitive, normalised to upper case). */
export function validateOrder(order: unknown, forList = false): OfflineOrder {
  const what = forList ? "event.offline.list order" : "event.offline.get order";
  const fields: readonly string[] = forList ? LIST_FIELDS : GET_FIELDS;
  const source = asPlainObject(order, what);
  const result: OfflineOrder = {};
  for (const [key, value] of Object.entries(source)) {
    const field = key.trim().toUpperCase();
    if (!fields.includes(field))
      throw refuse(what, `field "${key}" cannot be sorted on; allowed: ${fields.join(", ")}`);
    const direction = typeof value === "string" ? value.trim().toUpperCase() : "";
    if (direction !== "ASC" && direction !== "DESC") {
      throw refuse(what, `direction of "${key}" must be "ASC" or "DESC", got ${JSON.stringify(value)}`);
    }
    result[field] = direction;
  }
  return result;
}

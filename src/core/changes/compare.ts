/**
 * Comparing two reads of one object by meaning, not by JSON text (issue 21): the portal answers the same value
 * as "10" in one read and 10 in another (crm.deal.list vs crm.item.list, or after a module update), gives
 * multi-fields (PHONE, EMAIL) and multiple user fields in no promised order, and objects in no promised key order.
 */

/** `{FIELD: {before, after}}` (+ labels, added by field-labels.ts). */
export interface FieldChange {
  before: unknown;
  after: unknown;
  beforeLabel?: string;
  afterLabel?: string;
}

export type Changes = Record<string, FieldChange>;

// Decimal text without a leading zero ("007" is an identifier, not the number 7).
const DECIMAL = /^-?(0|[1-9]\d*)(\.\d+)?$/;
// ISO 8601 date-times with an offset: the same instant may come back in another zone.
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)$/;

/**
 * A canonical text of a value: equal texts mean equal values. Empty values (null, "", [], {}) are one value:
 * the portal answers an unset field as null in one method and "" or [] in another.
 */
export function canonical(value: unknown): string {
  if (value === null || value === undefined) return "";
  switch (typeof value) {
    case "number":
      return Number.isFinite(value) ? `n${value}` : `s${String(value)}`;
    case "boolean":
      return `b${value}`;
    case "string": {
      if (value === "") return "";
      if (DECIMAL.test(value)) return `n${Number(value)}`;
      if (ISO_DATE_TIME.test(value)) {
        const t = Date.parse(value);
        if (Number.isFinite(t)) return `d${t}`;
      }
      return `s${value}`;
    }
    case "object": {
      if (Array.isArray(value)) {
        if (value.length === 0) return "";
        // Multi-fields and multiple user fields: a set of values, order is not part of the meaning.
        return `[${value
          .map(canonical)
          .sort()
          .map((v) => JSON.stringify(v))
          .join(",")}]`;
      }
      const entries = Object.entries(value as Record<string, unknown>)
        .map(([k, v]) => [k, canonical(v)] as const)
        .filter(([, v]) => v !== "")
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      if (entries.length === 0) return "";
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`;
    }
    default:
      return `s${String(value)}`;
  }
}

export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  return canonical(a) === canonical(b);
}

/** Field names of a `watchFields` text: comma- (or space-) separated, case kept; empty = every field. */
export function parseWatchFields(text: string | string[] | undefined): string[] {
  const parts = Array.isArray(text) ? text : String(text ?? "").split(/[,\s]+/);
  return [...new Set(parts.map((p) => p.trim()).filter((p) => p !== ""))];
}

/**
 * The fields kept for the next comparison: all of them, or the watched ones. A field a user never watches is
 * never compared, so keeping it would only make the store larger (a deal with user fields is ~2 KB, its stage
 * and amount ~40 bytes); a field added to watchFields later starts at first sight for that field.
 */
export function pickFields(object: Record<string, unknown>, watch: readonly string[]): Record<string, unknown> {
  if (watch.length === 0) return { ...object };
  const picked: Record<string, unknown> = {};
  for (const name of watch) if (name in object) picked[name] = object[name];
  return picked;
}

/**
 * The changed fields between the last acknowledged state and the object now. Only fields known on both sides
 * are compared when watching everything (a field the select did not return is not a change); a watched field
 * present on one side only is a change (it was set or cleared), unless the stored state predates watching it.
 */
export function diffFields(
  before: Record<string, unknown>,
  after: Record<string, unknown>,
  watch: readonly string[],
): Changes {
  const changes: Changes = {};
  const names = watch.length > 0 ? watch : [...new Set([...Object.keys(before), ...Object.keys(after)])];
  for (const name of names) {
    const had = name in before;
    const has = name in after;
    if (!had && !(watch.length === 0 && has)) continue;
    if (!has && watch.length === 0) continue;
    const b = before[name];
    const a = after[name];
    if (!sameValue(b, a)) changes[name] = { before: b ?? null, after: a ?? null };
  }
  return changes;
}

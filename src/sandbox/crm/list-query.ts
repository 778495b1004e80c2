import { isPlainObject } from "../php/param-values";
import type { ParamValue } from "../php/php-params";
import type { RestError } from "../server/rest-error";
import type { ObjectTable, StoredObject } from "./object-table";

/**
 * `filter`, `order`, `select` and `start` of the list methods (crm.*.list, crm.item.list, tasks.task.list,
 * user.get) over an ObjectTable. Filter keys are `<prefix><field>` with the prefixes the crm.*.list and
 * crm.item.list pages document: `=` (default), `!` / `!=`, `>`, `>=`, `<`, `<=`, `@` / `!@` (IN / NOT IN),
 * `%` / `!%` (substring LIKE), `=%` / `%=` / `!=%` / `!%=` (LIKE with the value's own `%`). An array value with
 * `=` means IN, as the ORM reads it. Nested groups with `logic: "OR"` are crm.item.list's.
 */

export const PAGE_SIZE = 50;

export interface FieldDef {
  name: string;
  type: string;
  title: string;
  readOnly?: boolean;
  immutable?: boolean;
  required?: boolean;
  multiple?: boolean;
  /** Extra keys of the `*.fields` description (statusType, settings, isDeprecated). */
  extra?: Record<string, unknown>;
  /** The value a row has when the field was never written. */
  default?: unknown;
}

/** A field definition, as the schemas list them. */
export function field(name: string, type: string, title: string, flags: Partial<FieldDef> = {}): FieldDef {
  return { name, type, title, ...flags };
}

type ValueKind = "number" | "time" | "text";

const NUMERIC_TYPES = new Set([
  "integer",
  "double",
  "user",
  "crm_company",
  "crm_contact",
  "crm_lead",
  "crm_quote",
  "crm_category",
  "crm_entity",
  "group",
]);

function kindOf(def: FieldDef): ValueKind {
  if (NUMERIC_TYPES.has(def.type)) return "number";
  if (def.type === "date" || def.type === "datetime") return "time";
  return "text";
}

/** The fields of one entity, looked up case-insensitively (the crm proxies upper-case filter keys). */
export class Schema {
  private readonly byLower = new Map<string, FieldDef>();
  readonly fields: FieldDef[] = [];

  constructor(
    fields: readonly FieldDef[],
    readonly idField: string,
  ) {
    for (const def of fields) this.add(def);
  }

  add(def: FieldDef): FieldDef {
    this.fields.push(def);
    this.byLower.set(def.name.toLowerCase(), def);
    return def;
  }

  find(name: string): FieldDef | undefined {
    return this.byLower.get(name.toLowerCase());
  }

  value(row: StoredObject, def: FieldDef): unknown {
    if (def.name === this.idField) return row.id;
    const v = row.fields[def.name];
    return v === undefined ? (def.default ?? null) : v;
  }
}

/** What an entity's list method does with arguments it does not accept (each method differs). */
export interface QueryPolicy {
  /** null = ignore the key (crm.deal.list and friends drop unknown fields). */
  unknownFilterField(key: string): RestError | null;
  unknownOrderField(key: string): RestError | null;
  /** null = ascending. */
  badDirection(field: string, direction: string): RestError | null;
  filterNotObject(): RestError;
  orderNotObject(): RestError;
  /** A plain `FIELD: "Iva%"` is a LIKE pattern (user.get, tasks.task.list's TITLE), not an exact match. */
  percentIsPattern?: boolean;
}

type Op = "eq" | "ne" | "gt" | "ge" | "lt" | "le" | "in" | "notIn" | "like" | "notLike" | "pattern" | "notPattern";

// Longest prefixes first, so `!=%` is not read as `!=` + a field named `%X`.
const PREFIXES: readonly [string, Op][] = [
  ["!=%", "notPattern"],
  ["!%=", "notPattern"],
  ["!@", "notIn"],
  [">=", "ge"],
  ["<=", "le"],
  ["!=", "ne"],
  ["=%", "pattern"],
  ["%=", "pattern"],
  ["!%", "notLike"],
  [">", "gt"],
  ["<", "lt"],
  ["@", "in"],
  ["%", "like"],
  ["=", "eq"],
  ["!", "ne"],
];

interface Leaf {
  def: FieldDef;
  kind: ValueKind;
  op: Op;
  value: unknown;
}

export interface FilterGroup {
  logic: "AND" | "OR";
  items: (Leaf | FilterGroup)[];
}

export interface SortKey {
  def: FieldDef;
  desc: boolean;
}

function isGroup(node: Leaf | FilterGroup): node is FilterGroup {
  return "items" in node;
}

export function parseFilter(raw: ParamValue | undefined, schema: Schema, policy: QueryPolicy): FilterGroup {
  const group: FilterGroup = { logic: "AND", items: [] };
  if (raw === undefined || raw === null || raw === "" || (Array.isArray(raw) && raw.length === 0)) return group;
  if (!isPlainObject(raw)) {
    // A PHP list of sub-filters ({0: {...}, 1: {...}}) arrives as an array.
    if (Array.isArray(raw) && raw.every(isPlainObject)) {
      for (const sub of raw) group.items.push(parseFilter(sub, schema, policy));
      return group;
    }
    throw policy.filterNotObject();
  }
  for (const [key, value] of Object.entries(raw)) {
    if (key.toUpperCase() === "LOGIC") {
      if (String(value).toUpperCase() === "OR") group.logic = "OR";
      continue;
    }
    if (/^\d+$/.test(key) && (isPlainObject(value) || Array.isArray(value))) {
      group.items.push(parseFilter(value, schema, policy));
      continue;
    }
    const prefix = PREFIXES.find(([p]) => key.startsWith(p) && key.length > p.length);
    const name = prefix ? key.slice(prefix[0].length) : key;
    const def = schema.find(name);
    if (!def) {
      const error = policy.unknownFilterField(name);
      if (error) throw error;
      continue;
    }
    let op: Op = prefix ? prefix[1] : "eq";
    if (policy.percentIsPattern && op === "eq" && typeof value === "string" && value.includes("%")) op = "pattern";
    group.items.push({ def, kind: kindOf(def), op, value });
  }
  return group;
}

export function parseOrder(raw: ParamValue | undefined, schema: Schema, policy: QueryPolicy): SortKey[] {
  if (raw === undefined || raw === null || raw === "" || (Array.isArray(raw) && raw.length === 0)) return [];
  if (!isPlainObject(raw)) throw policy.orderNotObject();
  const keys: SortKey[] = [];
  for (const [name, direction] of Object.entries(raw)) {
    const def = schema.find(name);
    if (!def) {
      const error = policy.unknownOrderField(name);
      if (error) throw error;
      continue;
    }
    const dir = String(direction ?? "").toUpperCase();
    if (dir !== "ASC" && dir !== "DESC") {
      const error = policy.badDirection(def.name, String(direction ?? ""));
      if (error) throw error;
    }
    keys.push({ def, desc: dir === "DESC" });
  }
  return keys;
}

/** Epoch ms of a filter or stored date: ISO 8601, `YYYY-MM-DD`, `DD.MM.YYYY[ HH:MM[:SS]]`, or unix seconds. */
export function timeOf(value: unknown): number {
  if (typeof value === "number") return value * 1000;
  const s = String(value ?? "").trim();
  const ru = /^(\d{2})\.(\d{2})\.(\d{4})(?:\s+(\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(s);
  if (ru) {
    return new Date(+ru[3], +ru[2] - 1, +ru[1], +(ru[4] ?? 0), +(ru[5] ?? 0), +(ru[6] ?? 0)).getTime();
  }
  if (/^\d{4}-\d{2}-\d{2}$/.test(s)) return new Date(`${s}T00:00:00`).getTime();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? Number.NaN : t;
}

function isEmpty(value: unknown): boolean {
  return value === null || value === undefined || value === "" || value === false;
}

/** A number as the database sees a filter value: text that is not a number counts as 0 (PHP's intval). */
function numberOf(value: unknown): number {
  const n = Number(value);
  if (Number.isFinite(n)) return n;
  const parsed = Number.parseFloat(String(value));
  return Number.isNaN(parsed) ? 0 : parsed;
}

function compare(a: unknown, b: unknown, kind: ValueKind): number {
  if (kind === "number") return numberOf(a) - numberOf(b);
  if (kind === "time") return timeOf(a) - timeOf(b);
  const x = String(a).toLowerCase();
  const y = String(b).toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

function equals(stored: unknown, wanted: unknown, kind: ValueKind): boolean {
  if (isEmpty(wanted)) return isEmpty(stored);
  if (isEmpty(stored)) return false;
  return compare(stored, wanted, kind) === 0;
}

function likePattern(pattern: string): RegExp {
  const body = pattern
    .replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
    .replace(/%/g, ".*")
    .replace(/_/g, ".");
  return new RegExp(`^${body}$`, "is");
}

/** Multiple fields (CONTACT_IDS, PHONE, ...) match when any of their values does. */
function scalars(stored: unknown): unknown[] {
  if (!Array.isArray(stored)) return [stored];
  return stored.map((v) => (isPlainObject(v) && "VALUE" in v ? v.VALUE : v));
}

function matchLeaf(leaf: Leaf, stored: unknown): boolean {
  const values = scalars(stored);
  const wanted = leaf.value;
  const list = Array.isArray(wanted) ? wanted : [wanted];
  const any = (test: (v: unknown) => boolean) => values.some(test);
  switch (leaf.op) {
    case "eq":
      return Array.isArray(wanted)
        ? any((v) => list.some((w) => equals(v, w, leaf.kind)))
        : any((v) => equals(v, wanted, leaf.kind));
    case "ne":
      return !matchLeaf({ ...leaf, op: "eq" }, stored);
    case "in":
      return any((v) => list.some((w) => equals(v, w, leaf.kind)));
    case "notIn":
      return !matchLeaf({ ...leaf, op: "in" }, stored);
    case "gt":
      return any((v) => !isEmpty(v) && compare(v, wanted, leaf.kind) > 0);
    case "ge":
      return any((v) => !isEmpty(v) && compare(v, wanted, leaf.kind) >= 0);
    case "lt":
      return any((v) => !isEmpty(v) && compare(v, wanted, leaf.kind) < 0);
    case "le":
      return any((v) => !isEmpty(v) && compare(v, wanted, leaf.kind) <= 0);
    case "like": {
      const needle = String(wanted ?? "").toLowerCase();
      return any((v) => !isEmpty(v) && String(v).toLowerCase().includes(needle));
    }
    case "notLike":
      return !matchLeaf({ ...leaf, op: "like" }, stored);
    case "pattern": {
      const re = likePattern(String(wanted ?? ""));
      return any((v) => !isEmpty(v) && re.test(String(v)));
    }
    case "notPattern":
      return !matchLeaf({ ...leaf, op: "pattern" }, stored);
  }
}

export function matches(row: StoredObject, group: FilterGroup, schema: Schema): boolean {
  if (group.items.length === 0) return true;
  const test = (node: Leaf | FilterGroup) =>
    isGroup(node) ? matches(row, node, schema) : matchLeaf(node, schema.value(row, node.def));
  return group.logic === "OR" ? group.items.some(test) : group.items.every(test);
}

/** The ID range a top-level AND filter allows, so an ID-ordered read can start there. */
function idBounds(group: FilterGroup, schema: Schema): { from: number; to: number } {
  const bounds = { from: 1, to: Number.MAX_SAFE_INTEGER };
  if (group.logic !== "AND") return bounds;
  for (const node of group.items) {
    if (isGroup(node) || node.def.name !== schema.idField || Array.isArray(node.value)) continue;
    const n = numberOf(node.value);
    if (node.op === "gt") bounds.from = Math.max(bounds.from, Math.floor(n) + 1);
    else if (node.op === "ge" || node.op === "eq") bounds.from = Math.max(bounds.from, Math.ceil(n));
    if (node.op === "lt") bounds.to = Math.min(bounds.to, Math.ceil(n) - 1);
    else if (node.op === "le" || node.op === "eq") bounds.to = Math.min(bounds.to, Math.floor(n));
  }
  return bounds;
}

export interface ListPage {
  rows: StoredObject[];
  /** null when the count was skipped (`start=-1`). */
  total: number | null;
}

/**
 * One page. `start` < 0 skips the count and reads from the beginning (the docs' "large volumes" mode);
 * otherwise the page starts at `start` and every match is counted for `total`. No order = ID ascending.
 */
export function listPage(
  table: ObjectTable,
  schema: Schema,
  filter: FilterGroup,
  order: readonly SortKey[],
  start: number,
): ListPage {
  const count = start >= 0;
  const offset = Math.max(0, start);
  const byId = order.length === 0 || (order.length === 1 && order[0].def.name === schema.idField);
  if (byId) {
    const { from, to } = idBounds(filter, schema);
    const desc = order.length === 1 && order[0].desc;
    const rows: StoredObject[] = [];
    let seen = 0;
    for (const row of desc ? table.descending(to) : table.ascending(from)) {
      if (desc ? row.id < from : row.id > to) break;
      if (!matches(row, filter, schema)) continue;
      if (seen >= offset && rows.length < PAGE_SIZE) rows.push(row);
      seen++;
      if (!count && rows.length >= PAGE_SIZE) break;
    }
    return { rows, total: count ? seen : null };
  }
  const found: StoredObject[] = [];
  for (const row of table.ascending()) if (matches(row, filter, schema)) found.push(row);
  found.sort((a, b) => {
    for (const key of order) {
      const x = schema.value(a, key.def);
      const y = schema.value(b, key.def);
      // NULLs first ascending, as MySQL sorts them.
      const c = isEmpty(x) ? (isEmpty(y) ? 0 : -1) : isEmpty(y) ? 1 : compare(x, y, kindOf(key.def));
      if (c !== 0 && !Number.isNaN(c)) return key.desc ? -c : c;
    }
    return a.id - b.id;
  });
  return { rows: found.slice(offset, offset + PAGE_SIZE), total: count ? found.length : null };
}

/** `total` and `next` as list answers carry them: total 0 and no next when the count was skipped. */
export function pagingOf(page: ListPage, start: number): { total: number; next?: number } {
  if (page.total === null) return { total: 0 };
  const offset = Math.max(0, start);
  return offset + PAGE_SIZE < page.total ? { total: page.total, next: offset + PAGE_SIZE } : { total: page.total };
}

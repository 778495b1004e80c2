import { intval, isPlainObject, text } from "../php/param-values";
import type { Params } from "../php/php-params";
import type { Handler, PortalState } from "../server/method-types";
import { RestError } from "../server/rest-error";
import { scalarInput } from "./crm-entities";
import { fieldsAnswer } from "./crm-methods";
import {
  type FieldDef,
  listPage,
  pagingOf,
  parseFilter,
  parseOrder,
  type QueryPolicy,
  type Schema,
} from "./list-query";
import { itemView, SMART_PROCESS_TYPE_ID, stamps } from "./object-fields";
import type { StoredObject } from "./object-table";

/**
 * crm.item.* for ONE smart process, entityTypeId 128: camelCase fields, numbers as JSON numbers, answers
 * `{item}` / `{items}` (crm.item.get's page), errors with codes (`NOT_FOUND`, `INVALID_ARG_VALUE`), and the
 * events ONCRMDYNAMICITEM{ADD,UPDATE,DELETE} with `FIELDS: {ID, ENTITY_TYPE_ID}`.
 */

function itemError(code: string, description: string): RestError {
  return new RestError(code, description, 400);
}

const ITEM_POLICY: QueryPolicy = {
  unknownFilterField: (key) =>
    itemError("INVALID_ARG_VALUE", `Invalid filter: field '${key}' is not allowed in filter`),
  unknownOrderField: (key) => itemError("INVALID_ARG_VALUE", `Invalid order: field '${key}' is not allowed in order`),
  badDirection: (field, direction) =>
    itemError(
      "INVALID_ARG_VALUE",
      `Invalid order: allowed sort directions are ASC, DESC. But got '${direction}' for field '${field}'`,
    ),
  filterNotObject: () => itemError("INVALID_ARG_VALUE", "Invalid filter"),
  orderNotObject: () => itemError("INVALID_ARG_VALUE", "Invalid order"),
};

/** Fields of an add/update; camelCase names (any case accepted), new `ufCrm...` user fields created. */
function applyInput(schema: Schema, target: Record<string, unknown>, input: Params): void {
  for (const [key, raw] of Object.entries(input)) {
    let def = schema.find(key);
    if (!def && /^ufCrm/i.test(key)) def = schema.add({ name: key, type: "string", title: key });
    if (!def || def.readOnly) continue;
    const value = def.multiple
      ? (Array.isArray(raw) ? raw : [raw]).map((v) => Number.parseInt(String(v), 10)).filter(Number.isInteger)
      : scalarInput(def, raw);
    if (value === undefined) continue;
    // crm.item answers numbers as numbers and empty links as 0.
    target[def.name] = value === null && (def.type.startsWith("crm_") || def.type === "user") ? 0 : value;
  }
}

function requireType(params: Params): void {
  if (intval(params.ENTITYTYPEID, 0) !== SMART_PROCESS_TYPE_ID) throw itemError("NOT_FOUND", "Smart process not found");
}

function foundRow(state: PortalState, params: Params): StoredObject {
  const row = state.crm.items.get(intval(params.ID, 0));
  if (!row) throw itemError("NOT_FOUND", "Element not found");
  return row;
}

function fieldsOf(params: Params): Params {
  return isPlainObject(params.FIELDS) ? params.FIELDS : {};
}

function emit(state: PortalState, params: Params, action: string, id: number): void {
  state.events.emit(
    `ONCRMDYNAMICITEM${action}`,
    { FIELDS: { ID: String(id), ENTITY_TYPE_ID: String(SMART_PROCESS_TYPE_ID) } },
    text(params.AUTH_CONNECTOR),
  );
}

function itemFieldsAnswer(schema: Schema): Record<string, unknown> {
  const described = fieldsAnswer(schema.fields);
  for (const def of schema.fields) {
    const d = described[def.name] as Record<string, unknown>;
    d.upperName = def.name.replace(/([A-Z])/g, "_$1").toUpperCase();
  }
  return described;
}

export const ITEM_HANDLERS: Readonly<Record<string, Handler>> = {
  "crm.item.add": (state, params) => {
    requireType(params);
    const row = state.crm.items.insert({});
    const fields: Record<string, unknown> = { title: "", ...stamps(Math.floor(Date.now() / 1000), true) };
    applyInput(state.crm.itemSchema, fields, fieldsOf(params));
    row.fields = fields;
    emit(state, params, "ADD", row.id);
    return { result: { item: itemView(state.crm.itemSchema, row) } };
  },
  "crm.item.update": (state, params) => {
    requireType(params);
    const row = foundRow(state, params);
    const changes: Record<string, unknown> = {};
    applyInput(state.crm.itemSchema, changes, fieldsOf(params));
    if (changes.stageId !== undefined && changes.stageId !== row.fields.stageId) {
      changes.previousStageId = state.crm.itemSchema.value(row, state.crm.itemSchema.find("stageId") as FieldDef);
    }
    row.fields = { ...row.fields, ...changes, ...stamps(Math.floor(Date.now() / 1000), false) };
    emit(state, params, "UPDATE", row.id);
    return { result: { item: itemView(state.crm.itemSchema, row) } };
  },
  "crm.item.get": (state, params) => {
    requireType(params);
    return { result: { item: itemView(state.crm.itemSchema, foundRow(state, params)) } };
  },
  "crm.item.list": (state, params) => {
    requireType(params);
    const schema = state.crm.itemSchema;
    const filter = parseFilter(params.FILTER, schema, ITEM_POLICY);
    const order = parseOrder(params.ORDER, schema, ITEM_POLICY);
    const start = params.START === undefined ? 0 : intval(params.START, 0);
    const names = Array.isArray(params.SELECT) ? params.SELECT.map(String) : [];
    const defs =
      names.length === 0 || names.includes("*")
        ? schema.fields
        : schema.fields.filter((d) => d.name === "id" || names.some((n) => n.toLowerCase() === d.name.toLowerCase()));
    const page = listPage(state.crm.items, schema, filter, order, start);
    return { result: { items: page.rows.map((row) => itemView(schema, row, defs)) }, ...pagingOf(page, start) };
  },
  "crm.item.delete": (state, params) => {
    requireType(params);
    const row = foundRow(state, params);
    state.crm.items.delete(row.id);
    emit(state, params, "DELETE", row.id);
    return { result: [] };
  },
  "crm.item.fields": (state, params) => {
    requireType(params);
    return { result: { fields: itemFieldsAnswer(state.crm.itemSchema) } };
  },
};

import { intval, isPlainObject, text } from "../php/param-values";
import type { Params, ParamValue } from "../php/php-params";
import type { Handler, PortalState } from "../server/method-types";
import { RestError } from "../server/rest-error";
import { isoFromSeconds } from "../server/rest-time";
import {
  CRM_ENTITY_NAMES,
  type CrmEntity,
  type CrmEntityName,
  crmInput,
  crmView,
  readableFields,
} from "./crm-entities";
import { type FieldDef, listPage, pagingOf, parseFilter, parseOrder, type QueryPolicy } from "./list-query";

/**
 * crm.deal.*, crm.contact.*, crm.lead.*, crm.company.* (add, update, get, list, delete, fields): one
 * implementation over the entity's schema. Errors are the crm proxies' (HTTP 400, an EMPTY `error` code and
 * the text in `error_description`, as every crm.deal.* page shows them).
 */

function crmError(description: string): RestError {
  return new RestError("", description, 400);
}

const CRM_LIST_POLICY: QueryPolicy = {
  // The crm proxies hand the filter and order to the entity's GetList, which drops keys it does not know.
  unknownFilterField: () => null,
  unknownOrderField: () => null,
  badDirection: () => null,
  filterNotObject: () => crmError("Parameter 'filter' must be array."),
  orderNotObject: () => crmError("Parameter 'order' must be array."),
};

function requireId(params: Params): number {
  const id = intval(params.ID, 0);
  if (id <= 0) throw crmError("ID is not defined or invalid.");
  return id;
}

function fieldsParam(params: Params): Record<string, ParamValue> {
  const fields = params.FIELDS;
  if (!isPlainObject(fields)) throw crmError("Parameter 'fields' must be array.");
  return fields;
}

/** The writable fields of `input`; unknown names are ignored, as the pages say, except new UF_CRM_ fields. */
function applyInput(state: PortalState, entity: CrmEntity, target: Record<string, unknown>, input: Params): void {
  for (const [key, raw] of Object.entries(input)) {
    const name = key.toUpperCase();
    let def = entity.schema.find(name);
    if (!def && name.startsWith("UF_CRM_")) {
      def = entity.schema.add({ name, type: "string", title: name });
    }
    if (!def || def.readOnly || def.name === entity.schema.idField) continue;
    const value = crmInput(def, raw, state.crm.nextMultiId);
    if (value !== undefined) target[def.name] = value;
  }
}

function selectedFields(entity: CrmEntity, raw: ParamValue | undefined): FieldDef[] {
  const names = Array.isArray(raw) ? raw.map((v) => String(v).toUpperCase()) : [];
  const all = names.length === 0;
  const wanted = new Set(names);
  const isUf = (def: FieldDef) => def.name.startsWith("UF_");
  return entity.schema.fields.filter((def) => {
    if (def.name === entity.schema.idField) return true;
    if (wanted.has(def.name)) return !def.multiple || def.type === "crm_multifield";
    if (def.multiple) return false;
    return isUf(def) ? all || wanted.has("UF_*") : all || wanted.has("*");
  });
}

function fieldDescription(def: FieldDef): Record<string, unknown> {
  const dynamic = def.name.startsWith("UF_");
  const description: Record<string, unknown> = {
    type: def.type,
    isRequired: def.required ?? false,
    isReadOnly: def.readOnly ?? false,
    isImmutable: def.immutable ?? false,
    isMultiple: def.multiple ?? false,
    isDynamic: dynamic,
    ...def.extra,
    title: def.title,
  };
  if (dynamic) Object.assign(description, { listLabel: def.title, formLabel: def.title, filterLabel: def.title });
  return description;
}

/** The `*.fields` answer of any entity schema. */
export function fieldsAnswer(fields: readonly FieldDef[]): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const def of fields) result[def.name] = fieldDescription(def);
  return result;
}

function handlersFor(kind: CrmEntityName): Record<string, Handler> {
  const entity = (state: PortalState) => state.crm.entities[kind];
  const table = (state: PortalState) => state.crm.tables[kind];
  const prefix = `crm.${kind}`;
  const found = (state: PortalState, params: Params) => {
    const id = requireId(params);
    const row = table(state).get(id);
    if (!row) throw crmError("Not found");
    return row;
  };
  const emit = (state: PortalState, params: Params, action: string, id: number) =>
    state.events.emit(
      `${entity(state).eventPrefix}${action}`,
      { FIELDS: { ID: String(id) } },
      text(params.AUTH_CONNECTOR),
    );

  return {
    [`${prefix}.add`]: (state, params) => {
      const input = fieldsParam(params);
      const e = entity(state);
      const row = table(state).insert({});
      const fields = e.initial(row.id, Math.floor(Date.now() / 1000));
      applyInput(state, e, fields, input);
      e.derive(fields);
      row.fields = fields;
      emit(state, params, "ADD", row.id);
      return { result: row.id };
    },
    [`${prefix}.update`]: (state, params) => {
      const row = found(state, params);
      const input = fieldsParam(params);
      const e = entity(state);
      const changes: Record<string, unknown> = {};
      applyInput(state, e, changes, input);
      const fields = { ...row.fields, ...changes, DATE_MODIFY: isoFromSeconds(Math.floor(Date.now() / 1000)) };
      e.derive(fields);
      row.fields = fields;
      emit(state, params, "UPDATE", row.id);
      return { result: true };
    },
    [`${prefix}.get`]: (state, params) => {
      const row = found(state, params);
      const e = entity(state);
      return { result: crmView(e, row, readableFields(e)) };
    },
    [`${prefix}.list`]: (state, params) => {
      const e = entity(state);
      const filter = parseFilter(params.FILTER, e.schema, CRM_LIST_POLICY);
      const order = parseOrder(params.ORDER, e.schema, CRM_LIST_POLICY);
      const start = params.START === undefined ? 0 : intval(params.START, 0);
      const defs = selectedFields(e, params.SELECT);
      const page = listPage(table(state), e.schema, filter, order, start);
      return { result: page.rows.map((row) => crmView(e, row, defs)), ...pagingOf(page, start) };
    },
    [`${prefix}.delete`]: (state, params) => {
      const row = found(state, params);
      table(state).delete(row.id);
      emit(state, params, "DELETE", row.id);
      return { result: true };
    },
    [`${prefix}.fields`]: (state) => ({ result: fieldsAnswer(entity(state).schema.fields) }),
  };
}

export const CRM_HANDLERS: Readonly<Record<string, Handler>> = Object.assign(
  {},
  ...CRM_ENTITY_NAMES.map((kind) => handlersFor(kind)),
);

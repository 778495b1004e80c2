import { intval, isPlainObject } from "../php/param-values";
import type { Params, ParamValue } from "../php/php-params";
import { RestError } from "../server/rest-error";
import type { Handler } from "../server/rest-methods";
import { field, listPage, pagingOf, parseFilter, parseOrder, type QueryPolicy, Schema } from "./list-query";
import type { StoredObject } from "./object-table";

/**
 * user.get: `result: [...]` with `total`/`next`, filter from `FILTER` or from top-level field names (as the
 * page's own example passes UF_DEPARTMENT), the page's prefixes, `SORT` + `ORDER` (default ID ascending),
 * values as the page shows them (ID as a string, ACTIVE as a boolean, UF_DEPARTMENT as a list of numbers).
 */

const f = field;

export function userSchema(): Schema {
  return new Schema(
    [
      f("ID", "integer", "ID"),
      f("ACTIVE", "boolean", "Active", { default: true }),
      f("NAME", "string", "First name", { default: "" }),
      f("LAST_NAME", "string", "Last name", { default: "" }),
      f("SECOND_NAME", "string", "Second name", { default: "" }),
      f("EMAIL", "string", "E-mail", { default: "" }),
      f("LAST_LOGIN", "datetime", "Last login"),
      f("DATE_REGISTER", "datetime", "Registered"),
      f("TIME_ZONE", "string", "Time zone", { default: "" }),
      f("IS_ONLINE", "char", "Online", { default: "N" }),
      f("PERSONAL_GENDER", "string", "Gender", { default: "" }),
      f("PERSONAL_BIRTHDAY", "string", "Birthday", { default: "" }),
      f("PERSONAL_MOBILE", "string", "Mobile", { default: "" }),
      f("PERSONAL_CITY", "string", "City", { default: "" }),
      f("WORK_PHONE", "string", "Work phone", { default: "" }),
      f("WORK_POSITION", "string", "Position", { default: "" }),
      f("UF_EMPLOYMENT_DATE", "string", "Employment date", { default: "" }),
      f("UF_DEPARTMENT", "integer", "Departments", { multiple: true, default: [1] }),
      f("USER_TYPE", "string", "User type", { default: "employee" }),
    ],
    "ID",
  );
}

const USER_POLICY: QueryPolicy = {
  unknownFilterField: () => null,
  unknownOrderField: () => null,
  badDirection: () => null,
  filterNotObject: () => new RestError("INVALID_FILTER", "Invalid filter", 400),
  orderNotObject: () => new RestError("INVALID_ORDER", "Invalid order", 400),
  percentIsPattern: true,
};

export function userView(schema: Schema, row: StoredObject): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const def of schema.fields) {
    const value = schema.value(row, def);
    if (def.name === "ID") out.ID = String(row.id);
    else if (def.type === "boolean") out[def.name] = value === true || value === "Y";
    else out[def.name] = value ?? "";
  }
  return out;
}

const RESERVED = new Set(["FILTER", "SORT", "ORDER", "START", "ADMIN_MODE", "AUTH_CONNECTOR"]);

function filterOf(params: Params, schema: Schema): ParamValue | undefined {
  const filter: Record<string, ParamValue> = isPlainObject(params.FILTER) ? { ...params.FILTER } : {};
  for (const [key, value] of Object.entries(params)) {
    if (RESERVED.has(key)) continue;
    const name = key.replace(/^[^A-Za-z_]+/, "");
    if (schema.find(name)) filter[key] = value;
  }
  return Object.keys(filter).length > 0 ? filter : params.FILTER;
}

export const USER_HANDLERS: Readonly<Record<string, Handler>> = {
  "user.get": (state, params) => {
    const schema = state.crm.userSchema;
    const filter = parseFilter(filterOf(params, schema), schema, USER_POLICY);
    const sort = typeof params.SORT === "string" ? params.SORT : "";
    const order = sort ? parseOrder({ [sort]: String(params.ORDER ?? "ASC") }, schema, USER_POLICY) : [];
    const start = params.START === undefined ? 0 : intval(params.START, 0);
    const page = listPage(state.crm.users, schema, filter, order, start);
    return { result: page.rows.map((row) => userView(schema, row)), ...pagingOf(page, start) };
  },
};

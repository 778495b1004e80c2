import { intval, isPlainObject } from "../php/param-values";
import type { Params, ParamValue } from "../php/php-params";
import type { Handler } from "../server/method-types";
import { RestError } from "../server/rest-error";
import { listPage, pagingOf, parseFilter, parseOrder, type QueryPolicy, type Schema } from "./list-query";
import { userView } from "./object-fields";

/**
 * user.get: `result: [...]` with `total`/`next`, filter from `FILTER` or from top-level field names (as the
 * page's own example passes UF_DEPARTMENT), the page's prefixes, `SORT` + `ORDER` (default ID ascending),
 * values as the page shows them (ID as a string, ACTIVE as a boolean, UF_DEPARTMENT as a list of numbers).
 */

const USER_POLICY: QueryPolicy = {
  unknownFilterField: () => null,
  unknownOrderField: () => null,
  badDirection: () => null,
  filterNotObject: () => new RestError("INVALID_FILTER", "Invalid filter", 400),
  orderNotObject: () => new RestError("INVALID_ORDER", "Invalid order", 400),
  percentIsPattern: true,
};

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

import { intval, isPlainObject, text } from "../php/param-values";
import type { Params } from "../php/php-params";
import type { Handler } from "../server/method-types";
import { RestError } from "../server/rest-error";

/**
 * crm.status.* (the CRM directories: stages, statuses, sources, deal types) as the REST docs' crm-status-list
 * page shows them: rows {ID, ENTITY_ID, STATUS_ID, NAME, NAME_INIT, SORT, SYSTEM, CATEGORY_ID, COLOR, SEMANTICS,
 * EXTRA}; list filters by any of those fields with equality, orders by SORT, pages of 50 (`start`); `select` and
 * navigation are not supported (the page says so). Deal pipelines have DEAL_STAGE_<category>, smart processes
 * DYNAMIC_<type>_STAGE_<category> (status ids DT<type>_<category>:NEW).
 * crm.status.add / update let tests and the demo add a stage "in the portal".
 */

function crmError(description: string): RestError {
  return new RestError("", description, 400);
}

const PAGE = 50;

export const STATUS_HANDLERS: Readonly<Record<string, Handler>> = {
  "crm.status.list": (state, params) => {
    const raw = params.FILTER;
    if (raw !== undefined && !isPlainObject(raw)) throw crmError("Parameter 'filter' must be array.");
    const filter: Record<string, string> = {};
    for (const [k, v] of Object.entries(raw ?? {})) filter[k.toUpperCase().replace(/^=/, "")] = text(v);
    const rows = state.crm.statuses.list(filter);
    const start = Math.max(0, intval(params.START, 0));
    const page = rows.slice(start, start + PAGE);
    const answer: { result: unknown; total: number; next?: number } = { result: page, total: rows.length };
    if (start + PAGE < rows.length) answer.next = start + PAGE;
    return answer;
  },
  "crm.status.add": (state, params: Params) => {
    const fields = params.FIELDS;
    if (!isPlainObject(fields)) throw crmError("Parameter 'fields' must be array.");
    const entityId = text(fields.ENTITY_ID);
    const statusId = text(fields.STATUS_ID);
    const name = text(fields.NAME);
    if (!entityId || !statusId || !name) throw crmError("ENTITY_ID, STATUS_ID and NAME are required.");
    if (state.crm.statuses.list({ ENTITY_ID: entityId, STATUS_ID: statusId }).length > 0) {
      throw crmError("The status already exists.");
    }
    const sort = text(fields.SORT);
    return {
      result: Number(
        state.crm.statuses.add({
          ENTITY_ID: entityId,
          STATUS_ID: statusId,
          NAME: name,
          ...(sort ? { SORT: sort } : {}),
        }).ID,
      ),
    };
  },
  "crm.status.update": (state, params: Params) => {
    const row = state.crm.statuses.find(intval(params.ID, 0));
    if (!row) throw crmError("Not found");
    const fields = params.FIELDS;
    if (!isPlainObject(fields)) throw crmError("Parameter 'fields' must be array.");
    if (fields.NAME !== undefined) row.NAME = text(fields.NAME);
    if (fields.SORT !== undefined) row.SORT = text(fields.SORT);
    return { result: true };
  },
};

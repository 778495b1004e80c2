import { intval, isPlainObject, text } from "../php/param-values";
import type { Params } from "../php/php-params";
import { RestError } from "../server/rest-error";
import type { Handler } from "../server/rest-methods";

/**
 * crm.status.* (the CRM directories: stages, statuses, sources, deal types) as the REST docs' crm-status-list
 * page shows them: rows {ID, ENTITY_ID, STATUS_ID, NAME, NAME_INIT, SORT, SYSTEM, CATEGORY_ID, COLOR, SEMANTICS,
 * EXTRA}; list filters by any of those fields with equality, orders by SORT, pages of 50 (`start`); `select` and
 * navigation are not supported (the page says so). Deal pipelines have DEAL_STAGE_<category>, smart processes
 * DYNAMIC_<type>_STAGE_<category> (status ids DT<type>_<category>:NEW).
 * crm.status.add / update let tests and the demo add a stage "in the portal".
 */

export interface StatusRow {
  ID: string;
  ENTITY_ID: string;
  STATUS_ID: string;
  NAME: string;
  NAME_INIT: string;
  SORT: string;
  SYSTEM: "Y" | "N";
  CATEGORY_ID: string | null;
  SEMANTICS: string | null;
}

const DEFAULTS: Array<[entity: string, status: string, name: string, semantics?: string]> = [
  ["DEAL_STAGE", "NEW", "New"],
  ["DEAL_STAGE", "PREPARATION", "Document preparation"],
  ["DEAL_STAGE", "PREPAYMENT_INVOICE", "Prepayment invoice"],
  ["DEAL_STAGE", "EXECUTING", "In progress"],
  ["DEAL_STAGE", "FINAL_INVOICE", "Final invoice"],
  ["DEAL_STAGE", "WON", "Deal successful", "S"],
  ["DEAL_STAGE", "LOSE", "Deal failed", "F"],
  ["DEAL_TYPE", "SALE", "Sales"],
  ["DEAL_TYPE", "COMPLEX", "Complex sale"],
  ["DEAL_TYPE", "SERVICE", "Service"],
  ["STATUS", "NEW", "Unassigned"],
  ["STATUS", "IN_PROCESS", "In progress"],
  ["STATUS", "PROCESSED", "Processed"],
  ["STATUS", "CONVERTED", "Good lead", "S"],
  ["STATUS", "JUNK", "Junk lead", "F"],
  ["SOURCE", "CALL", "Call"],
  ["SOURCE", "EMAIL", "E-Mail"],
  ["SOURCE", "WEB", "Website"],
  ["SOURCE", "ADVERTISING", "Advertising"],
  ["SOURCE", "OTHER", "Other"],
  ["DYNAMIC_128_STAGE_1", "DT128_1:NEW", "New"],
  ["DYNAMIC_128_STAGE_1", "DT128_1:PREPARATION", "Preparation"],
  ["DYNAMIC_128_STAGE_1", "DT128_1:CLIENT", "With the client"],
  ["DYNAMIC_128_STAGE_1", "DT128_1:SUCCESS", "Success", "S"],
  ["DYNAMIC_128_STAGE_1", "DT128_1:FAIL", "Failure", "F"],
];

export class StatusDirectory {
  private readonly rows: StatusRow[] = [];
  private lastId = 100;

  constructor() {
    const sortOf = new Map<string, number>();
    for (const [entity, status, name, semantics] of DEFAULTS) {
      const sort = (sortOf.get(entity) ?? 0) + 10;
      sortOf.set(entity, sort);
      this.add({ ENTITY_ID: entity, STATUS_ID: status, NAME: name, SORT: String(sort), SEMANTICS: semantics ?? null });
    }
  }

  add(fields: Partial<StatusRow> & { ENTITY_ID: string; STATUS_ID: string; NAME: string }): StatusRow {
    const category = /^DEAL_STAGE_(\d+)$/.exec(fields.ENTITY_ID)?.[1] ?? null;
    const row: StatusRow = {
      ID: String(++this.lastId),
      NAME_INIT: "",
      SORT: "500",
      SYSTEM: "N",
      CATEGORY_ID: category,
      SEMANTICS: null,
      ...fields,
    };
    this.rows.push(row);
    return row;
  }

  find(id: number): StatusRow | undefined {
    return this.rows.find((r) => Number(r.ID) === id);
  }

  list(filter: Record<string, string>): StatusRow[] {
    return this.rows
      .filter((r) => Object.entries(filter).every(([k, v]) => String(r[k as keyof StatusRow] ?? "") === v))
      .sort((a, b) => Number(a.SORT) - Number(b.SORT) || Number(a.ID) - Number(b.ID));
  }
}

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

/**
 * The CRM directories the store holds (stages, statuses, sources, deal types), with the rows a new portal has: the
 * data behind crm.status.* (status-methods.ts). Apart from the methods so that the store needs none of them.
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

import { isoFromSeconds } from "../server/rest-time";
import { camelCase } from "./camel-case";
import { type FieldDef, field, Schema } from "./list-query";
import type { StoredObject } from "./object-table";

/**
 * The fields of the objects beyond the CRM entities (crm-entities.ts): smart-process items, tasks and users.
 * Each kind's schema, how one object looks in its methods' answers, and the fields of seeded ones. The store
 * (crm-store.ts) builds its tables from these and the method modules (item-, task-, user-methods.ts) answer
 * with them; kept apart from the methods so that the store needs none of them.
 */

const f = field;

// ---- smart-process items (crm.item.*, entityTypeId 128) ----

export const SMART_PROCESS_TYPE_ID = 128;
const CATEGORY_ID = 1;
const STAGE_PREFIX = `DT${SMART_PROCESS_TYPE_ID}_${CATEGORY_ID}:`;

export function itemSchema(): Schema {
  const ro = { readOnly: true };
  return new Schema(
    [
      f("id", "integer", "ID", ro),
      f("xmlId", "string", "External ID"),
      f("title", "string", "Name"),
      f("createdBy", "user", "Created by", { ...ro, default: 1 }),
      f("updatedBy", "user", "Updated by", { ...ro, default: 1 }),
      f("movedBy", "user", "Moved by", { ...ro, default: 1 }),
      f("createdTime", "datetime", "Created on", ro),
      f("updatedTime", "datetime", "Updated on", ro),
      f("movedTime", "datetime", "Moved on", ro),
      f("categoryId", "crm_category", "Pipeline", { default: CATEGORY_ID }),
      f("opened", "boolean", "Available to everyone", { default: "Y" }),
      f("stageId", "crm_status", "Stage", { default: `${STAGE_PREFIX}NEW` }),
      f("previousStageId", "crm_status", "Previous stage", ro),
      f("begindate", "date", "Start date"),
      f("closedate", "date", "End date"),
      f("companyId", "crm_company", "Company", { default: 0 }),
      f("contactId", "crm_contact", "Contact", { default: 0 }),
      f("opportunity", "double", "Amount", { default: 0 }),
      f("isManualOpportunity", "boolean", "Manual amount", { default: "N" }),
      f("taxValue", "double", "Tax", { default: 0 }),
      f("currencyId", "crm_currency", "Currency", { default: "USD" }),
      f("mycompanyId", "crm_company", "My company", { default: 0 }),
      f("sourceId", "crm_status", "Source", { default: "CALL" }),
      f("sourceDescription", "string", "Source information"),
      f("webformId", "integer", "Created by CRM form", { default: 0 }),
      f("assignedById", "user", "Responsible", { default: 1 }),
      f("lastActivityBy", "user", "Last activity by", { ...ro, default: 1 }),
      f("lastActivityTime", "datetime", "Last activity", ro),
      f("observers", "user", "Observers", { multiple: true }),
      f("contactIds", "crm_contact", "Contacts", { multiple: true }),
      f("entityTypeId", "integer", "Entity type", { ...ro, default: SMART_PROCESS_TYPE_ID }),
    ],
    "id",
  );
}

/** One item as crm.item.* answer it: every field, numbers as numbers, empty lists as []. */
export function itemView(schema: Schema, row: StoredObject, defs: readonly FieldDef[] = schema.fields) {
  const out: Record<string, unknown> = {};
  for (const def of defs) {
    const value = schema.value(row, def);
    out[def.name] = value === null && def.multiple ? [] : value;
  }
  return out;
}

/** The created/changed stamps of an item (both on add). */
export function stamps(nowSec: number, created: boolean): Record<string, unknown> {
  const now = isoFromSeconds(nowSec);
  return created
    ? { createdTime: now, updatedTime: now, movedTime: now, begindate: now, closedate: now }
    : { updatedTime: now };
}

/** Seeded items: a title and an amount, spread over the pipeline's stages. */
export function seedItemFields(id: number, nowSec: number): Record<string, unknown> {
  const stages = ["NEW", "PREPARATION", "CLIENT", "SUCCESS", "FAIL"];
  return {
    title: `Item #${id}`,
    opportunity: (id * 89) % 50_000,
    stageId: `${STAGE_PREFIX}${stages[id % stages.length]}`,
    ...stamps(nowSec, true),
  };
}

// ---- tasks (tasks.task.*) ----

export function taskSchema(): Schema {
  const ro = { readOnly: true };
  return new Schema(
    [
      f("ID", "integer", "ID", ro),
      f("PARENT_ID", "integer", "Parent task"),
      f("TITLE", "string", "Name"),
      f("DESCRIPTION", "string", "Description"),
      f("MARK", "string", "Rating"),
      f("PRIORITY", "integer", "Priority", { default: 1 }),
      f("STATUS", "integer", "Status", { default: 2 }),
      f("REAL_STATUS", "integer", "Status", { ...ro, default: 2 }),
      f("GROUP_ID", "group", "Project", { default: 0 }),
      f("STAGE_ID", "integer", "Stage", { default: 0 }),
      f("CREATED_BY", "user", "Created by", { default: 1 }),
      f("CREATED_DATE", "datetime", "Created on", ro),
      f("RESPONSIBLE_ID", "user", "Assignee"),
      f("ACCOMPLICES", "user", "Participants", { multiple: true }),
      f("AUDITORS", "user", "Observers", { multiple: true }),
      f("CHANGED_BY", "user", "Changed by", { ...ro, default: 1 }),
      f("CHANGED_DATE", "datetime", "Changed on", ro),
      f("STATUS_CHANGED_BY", "user", "Status changed by", { ...ro, default: 1 }),
      f("STATUS_CHANGED_DATE", "datetime", "Status changed on", ro),
      f("CLOSED_BY", "user", "Closed by", ro),
      f("CLOSED_DATE", "datetime", "Closed on", ro),
      f("DATE_START", "datetime", "Started on", ro),
      f("DEADLINE", "datetime", "Deadline"),
      f("START_DATE_PLAN", "datetime", "Planned start"),
      f("END_DATE_PLAN", "datetime", "Planned end"),
      f("ALLOW_CHANGE_DEADLINE", "char", "Assignee can change deadline", { default: "N" }),
      f("TASK_CONTROL", "char", "Approve task when completed", { default: "N" }),
      f("TIME_ESTIMATE", "integer", "Planned duration", { default: 0 }),
      f("UF_CRM_TASK", "crm", "CRM items", { multiple: true }),
    ],
    "ID",
  );
}

function asText(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value)) return value.map((v) => (typeof v === "number" ? String(v) : v));
  return typeof value === "number" ? String(value) : value;
}

/** One task as tasks.task.* answer it: camelCase keys, strings for numbers, [] for empty lists. */
export function taskView(schema: Schema, row: StoredObject, defs: readonly FieldDef[] = schema.fields) {
  const out: Record<string, unknown> = {};
  for (const def of defs) {
    const value = schema.value(row, def);
    out[camelCase(def.name)] = value === null && def.multiple ? [] : asText(value);
  }
  if (defs.some((d) => d.name === "STATUS")) out.subStatus = out.status;
  return out;
}

/** Seeded tasks: assigned round-robin to the portal's users, a few already completed. */
export function seedTaskFields(id: number, nowIso: string, users: number): Record<string, unknown> {
  const status = id % 5 === 0 ? 5 : 2;
  return {
    TITLE: `Task #${id}`,
    RESPONSIBLE_ID: 1 + (id % Math.max(1, users)),
    STATUS: status,
    REAL_STATUS: status,
    CREATED_DATE: nowIso,
    CHANGED_DATE: nowIso,
    STATUS_CHANGED_DATE: nowIso,
  };
}

// ---- users (user.get) ----

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

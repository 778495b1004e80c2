import { isoFromSeconds } from "../server/rest-time";
import { type FieldDef, field, Schema, timeOf } from "./list-query";
import type { StoredObject } from "./object-table";

/**
 * The four classic CRM entities (crm.deal/contact/lead/company.*): their fields as the `*.fields` pages
 * list them (the commonly used part: no requisites, addresses or product rows), the defaults `*.add`
 * documents, and the portal's way of writing values in answers: IDs and numbers as strings, money with two
 * decimals, dates as ISO 8601 with the server's offset, empty references as null.
 */

export type CrmEntityName = "deal" | "contact" | "lead" | "company";

export interface CrmEntity {
  name: CrmEntityName;
  /** ONCRMDEAL..., + ADD / UPDATE / DELETE. */
  eventPrefix: string;
  schema: Schema;
  /** Values an add sets before the caller's fields (defaults that depend on the id or the time). */
  initial(id: number, nowSec: number): Record<string, unknown>;
  /** Derived values after a write (stage semantics, HAS_PHONE ...). */
  derive(fields: Record<string, unknown>): void;
}

const f = field;

const RO = { readOnly: true } as const;
const MULTI_FIELD = { multiple: true } as const;

function common(): FieldDef[] {
  return [
    f("ASSIGNED_BY_ID", "user", "Responsible", { default: 1 }),
    f("CREATED_BY_ID", "user", "Created by", { ...RO, default: 1 }),
    f("MODIFY_BY_ID", "user", "Modified by", { ...RO, default: 1 }),
    f("DATE_CREATE", "datetime", "Created", RO),
    f("DATE_MODIFY", "datetime", "Modified", RO),
    f("OPENED", "char", "Available to everyone", { default: "Y" }),
    f("COMMENTS", "string", "Comment"),
    f("SOURCE_ID", "crm_status", "Source", { extra: { statusType: "SOURCE" }, default: "CALL" }),
    f("SOURCE_DESCRIPTION", "string", "Source information"),
    f("ORIGINATOR_ID", "string", "External source"),
    f("ORIGIN_ID", "string", "Item ID in data source"),
    f("UTM_SOURCE", "string", "Ad system"),
    f("UTM_MEDIUM", "string", "Medium"),
    f("UTM_CAMPAIGN", "string", "Ad campaign UTM"),
    f("UTM_CONTENT", "string", "Campaign contents"),
    f("UTM_TERM", "string", "Campaign search term"),
    f("LAST_ACTIVITY_TIME", "datetime", "Last activity", RO),
    f("LAST_ACTIVITY_BY", "user", "Last activity by", { ...RO, default: 1 }),
  ];
}

function communications(): FieldDef[] {
  return [
    f("HAS_PHONE", "char", "Has phone", { ...RO, default: "N" }),
    f("HAS_EMAIL", "char", "Has email", { ...RO, default: "N" }),
    f("HAS_IMOL", "char", "Has Open Channel", { ...RO, default: "N" }),
    f("PHONE", "crm_multifield", "Phone", MULTI_FIELD),
    f("EMAIL", "crm_multifield", "E-mail", MULTI_FIELD),
    f("WEB", "crm_multifield", "Website", MULTI_FIELD),
    f("IM", "crm_multifield", "Messenger", MULTI_FIELD),
  ];
}

function person(): FieldDef[] {
  return [
    f("HONORIFIC", "crm_status", "Salutation", { extra: { statusType: "HONORIFIC" } }),
    f("NAME", "string", "First name"),
    f("SECOND_NAME", "string", "Second name"),
    f("LAST_NAME", "string", "Last name"),
    f("BIRTHDATE", "date", "Date of birth"),
    f("POST", "string", "Position"),
  ];
}

function stageSemantic(stage: unknown): "P" | "S" | "F" {
  const s = String(stage ?? "");
  if (/(^|:)WON$/.test(s) || s === "CONVERTED") return "S";
  if (/(^|:)(LOSE|JUNK)$/.test(s)) return "F";
  return "P";
}

function hasCommunications(fields: Record<string, unknown>): void {
  const has = (key: string) => (Array.isArray(fields[key]) && (fields[key] as unknown[]).length > 0 ? "Y" : "N");
  if (fields.PHONE !== undefined) fields.HAS_PHONE = has("PHONE");
  if (fields.EMAIL !== undefined) fields.HAS_EMAIL = has("EMAIL");
  if (fields.IM !== undefined) fields.HAS_IMOL = has("IM");
}

const DAY_SEC = 86_400;

/** isoFromSeconds for the same second again and again (a seed of 100 000 objects): computed once. */
function memo(fn: (sec: number) => string): (sec: number) => string {
  let lastSec = Number.NaN;
  let last = "";
  return (sec) => {
    if (sec !== lastSec) {
      last = fn(sec);
      lastSec = sec;
    }
    return last;
  };
}

const isoNow = memo(isoFromSeconds);
const dateIn = memo((sec) => dateOnly(sec));
const dateInAWeek = memo((sec) => dateOnly(sec + 7 * DAY_SEC));

function stamps(nowSec: number): Record<string, unknown> {
  const now = isoNow(nowSec);
  return { DATE_CREATE: now, DATE_MODIFY: now };
}

const deal = (): CrmEntity => ({
  name: "deal",
  eventPrefix: "ONCRMDEAL",
  schema: new Schema(
    [
      f("ID", "integer", "ID", RO),
      f("TITLE", "string", "Name"),
      f("TYPE_ID", "crm_status", "Type", { extra: { statusType: "DEAL_TYPE" }, default: "SALE" }),
      f("CATEGORY_ID", "crm_category", "Pipeline", { immutable: true, default: 0 }),
      f("STAGE_ID", "crm_status", "Stage", { extra: { statusType: "DEAL_STAGE" }, default: "NEW" }),
      f("STAGE_SEMANTIC_ID", "string", "Stage group", { ...RO, default: "P" }),
      f("IS_NEW", "char", "New deal", { ...RO, default: "Y" }),
      f("IS_RECURRING", "char", "Recurring deal", { default: "N" }),
      f("IS_RETURN_CUSTOMER", "char", "Repeat deal", { default: "N" }),
      f("IS_REPEATED_APPROACH", "char", "Repeat inquiry", { default: "N" }),
      f("PROBABILITY", "integer", "Probability"),
      f("CURRENCY_ID", "crm_currency", "Currency", { default: "USD" }),
      f("OPPORTUNITY", "double", "Amount", { default: 0 }),
      f("IS_MANUAL_OPPORTUNITY", "char", "IS_MANUAL_OPPORTUNITY", { default: "N" }),
      f("TAX_VALUE", "double", "Tax rate", { default: 0 }),
      f("COMPANY_ID", "crm_company", "Company", { extra: { settings: { parentEntityTypeId: 4 } } }),
      f("CONTACT_ID", "crm_contact", "Contact", { extra: { isDeprecated: true } }),
      f("CONTACT_IDS", "crm_contact", "Contacts", { multiple: true }),
      f("QUOTE_ID", "crm_quote", "Quote", { ...RO, extra: { settings: { parentEntityTypeId: 7 } } }),
      f("BEGINDATE", "date", "Start date"),
      f("CLOSEDATE", "date", "End date"),
      f("CLOSED", "char", "Closed", { default: "N" }),
      f("LEAD_ID", "crm_lead", "Lead", { ...RO, extra: { settings: { parentEntityTypeId: 1 } } }),
      f("ADDITIONAL_INFO", "string", "Additional information"),
      f("LOCATION_ID", "location", "Location"),
      f("MOVED_BY_ID", "user", "MOVED_BY_ID", { ...RO, default: 1 }),
      f("MOVED_TIME", "datetime", "MOVED_TIME", RO),
      ...common(),
    ],
    "ID",
  ),
  initial(id, nowSec) {
    return {
      TITLE: `Deal #${id}`,
      BEGINDATE: dateIn(nowSec),
      CLOSEDATE: dateInAWeek(nowSec),
      MOVED_TIME: isoNow(nowSec),
      ...stamps(nowSec),
    };
  },
  derive(fields) {
    if (fields.STAGE_ID !== undefined) {
      const semantic = stageSemantic(fields.STAGE_ID);
      fields.STAGE_SEMANTIC_ID = semantic;
      fields.CLOSED = semantic === "P" ? "N" : "Y";
    }
    // The deprecated single CONTACT_ID follows the first of CONTACT_IDS.
    if (Array.isArray(fields.CONTACT_IDS)) fields.CONTACT_ID = fields.CONTACT_IDS[0] ?? null;
  },
});

const contact = (): CrmEntity => ({
  name: "contact",
  eventPrefix: "ONCRMCONTACT",
  schema: new Schema(
    [
      f("ID", "integer", "ID", RO),
      ...person(),
      f("PHOTO", "file", "Photo"),
      f("TYPE_ID", "crm_status", "Contact type", { extra: { statusType: "CONTACT_TYPE" }, default: "CLIENT" }),
      f("EXPORT", "char", "Included in export", { default: "Y" }),
      f("COMPANY_ID", "crm_company", "Company", { extra: { isDeprecated: true } }),
      f("COMPANY_IDS", "crm_company", "Companies", { multiple: true }),
      f("LEAD_ID", "crm_lead", "Lead", RO),
      f("ORIGIN_VERSION", "string", "Original version"),
      f("FACE_ID", "integer", "Photo ID", RO),
      ...communications(),
      ...common(),
    ],
    "ID",
  ),
  initial: (_id, nowSec) => stamps(nowSec),
  derive: hasCommunications,
});

const lead = (): CrmEntity => ({
  name: "lead",
  eventPrefix: "ONCRMLEAD",
  schema: new Schema(
    [
      f("ID", "integer", "ID", RO),
      f("TITLE", "string", "Lead name"),
      ...person(),
      f("COMPANY_TITLE", "string", "Company name"),
      f("STATUS_ID", "crm_status", "Stage", { extra: { statusType: "STATUS" }, default: "NEW" }),
      f("STATUS_DESCRIPTION", "string", "Stage description"),
      f("STATUS_SEMANTIC_ID", "string", "Stage group", { ...RO, default: "P" }),
      f("CURRENCY_ID", "crm_currency", "Currency", { default: "USD" }),
      f("OPPORTUNITY", "double", "Amount", { default: 0 }),
      f("IS_MANUAL_OPPORTUNITY", "char", "IS_MANUAL_OPPORTUNITY", { default: "N" }),
      f("COMPANY_ID", "crm_company", "Company"),
      f("CONTACT_ID", "crm_contact", "Contact"),
      f("CONTACT_IDS", "crm_contact", "Contacts", { multiple: true }),
      f("IS_RETURN_CUSTOMER", "char", "Repeat lead", { ...RO, default: "N" }),
      f("DATE_CLOSED", "datetime", "Closed on", RO),
      f("MOVED_BY_ID", "user", "MOVED_BY_ID", { ...RO, default: 1 }),
      f("MOVED_TIME", "datetime", "MOVED_TIME", RO),
      ...communications(),
      ...common(),
    ],
    "ID",
  ),
  initial(id, nowSec) {
    return { TITLE: `Lead #${id}`, MOVED_TIME: isoNow(nowSec), ...stamps(nowSec) };
  },
  derive(fields) {
    if (fields.STATUS_ID !== undefined) fields.STATUS_SEMANTIC_ID = stageSemantic(fields.STATUS_ID);
    hasCommunications(fields);
  },
});

const company = (): CrmEntity => ({
  name: "company",
  eventPrefix: "ONCRMCOMPANY",
  schema: new Schema(
    [
      f("ID", "integer", "ID", RO),
      f("TITLE", "string", "Company name"),
      f("COMPANY_TYPE", "crm_status", "Company type", { extra: { statusType: "COMPANY_TYPE" }, default: "CUSTOMER" }),
      f("LOGO", "file", "Logo"),
      f("INDUSTRY", "crm_status", "Industry", { extra: { statusType: "INDUSTRY" }, default: "IT" }),
      f("EMPLOYEES", "crm_status", "Employees", { extra: { statusType: "EMPLOYEES" }, default: "EMPLOYEES_1" }),
      f("CURRENCY_ID", "crm_currency", "Currency", { default: "USD" }),
      f("REVENUE", "double", "Annual revenue", { default: 0 }),
      f("BANKING_DETAILS", "string", "Payment details"),
      f("IS_MY_COMPANY", "char", "My company", { default: "N" }),
      f("CONTACT_ID", "crm_contact", "Contact", { multiple: true }),
      f("LEAD_ID", "crm_lead", "Lead", RO),
      f("ORIGIN_VERSION", "string", "Original version"),
      ...communications(),
      ...common(),
    ],
    "ID",
  ),
  initial(id, nowSec) {
    return { TITLE: `Company #${id}`, ...stamps(nowSec) };
  },
  derive: hasCommunications,
});

export const CRM_ENTITY_NAMES: readonly CrmEntityName[] = ["deal", "contact", "lead", "company"];

/** Fresh schemas per sandbox: user fields a write creates must not leak into another sandbox. */
export function crmEntities(): Record<CrmEntityName, CrmEntity> {
  return { deal: deal(), contact: contact(), lead: lead(), company: company() };
}

/** A `date` field's value: midnight of that day in the server's zone, written like `date('c')`. */
export function dateOnly(sec: number): string {
  const d = new Date(sec * 1000);
  return isoFromSeconds(new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() / 1000);
}

/** A written value as the crm.* write methods store it; undefined = not a value this field takes. */
export function crmInput(def: FieldDef, raw: unknown, nextMultiId: () => number): unknown {
  if (def.type === "crm_multifield") {
    const items = Array.isArray(raw) ? raw : raw && typeof raw === "object" ? Object.values(raw) : [];
    const out: Record<string, string>[] = [];
    for (const item of items) {
      if (!item || typeof item !== "object" || (item as Record<string, unknown>).VALUE === undefined) continue;
      const it = item as Record<string, unknown>;
      out.push({
        ID: String(nextMultiId()),
        VALUE_TYPE: String(it.VALUE_TYPE ?? "WORK"),
        VALUE: String(it.VALUE),
        TYPE_ID: def.name,
      });
    }
    return out;
  }
  if (def.multiple) {
    const list = Array.isArray(raw) ? raw : raw === null || raw === undefined || raw === "" ? [] : [raw];
    return list.map((v) => Number.parseInt(String(v), 10)).filter((n) => Number.isInteger(n) && n > 0);
  }
  return scalarInput(def, raw);
}

export function scalarInput(def: FieldDef, raw: unknown): unknown {
  if (raw === null || raw === undefined || (raw === "" && def.type !== "string")) return null;
  if (typeof raw === "object") return def.type === "string" || def.name.startsWith("UF_") ? raw : undefined;
  switch (def.type) {
    case "integer":
    case "user":
    case "crm_company":
    case "crm_contact":
    case "crm_lead":
    case "crm_quote":
    case "crm_category":
    case "crm_entity":
    case "group": {
      const n = Number.parseInt(String(raw), 10);
      return Number.isNaN(n) ? null : n;
    }
    case "double": {
      const n = Number.parseFloat(String(raw));
      return Number.isNaN(n) ? 0 : n;
    }
    case "char":
    case "boolean":
      return raw === true || String(raw).toUpperCase() === "Y" || raw === "1" || raw === 1 ? "Y" : "N";
    case "date": {
      const t = timeOf(raw);
      return Number.isNaN(t) ? null : dateOnly(Math.floor(t / 1000));
    }
    case "datetime": {
      const t = timeOf(raw);
      return Number.isNaN(t) ? null : isoFromSeconds(Math.floor(t / 1000));
    }
    default:
      return String(raw);
  }
}

/** A stored value as crm.*.get / list answer it. */
export function crmOutput(def: FieldDef, value: unknown): unknown {
  if (value === null || value === undefined) return def.multiple ? [] : null;
  if (Array.isArray(value)) return value.map((v) => (typeof v === "number" ? String(v) : v));
  if (typeof value === "number") return def.type === "double" ? value.toFixed(2) : String(value);
  return value;
}

/** The fields crm.*.get answers: everything but the multiple ID lists the pages say get/list never return. */
export function readableFields(entity: CrmEntity): FieldDef[] {
  return entity.schema.fields.filter((def) => !def.multiple || def.type === "crm_multifield");
}

/** One object as crm.*.get / list answer it, with the given fields (communications only when it has some). */
export function crmView(entity: CrmEntity, row: StoredObject, defs: readonly FieldDef[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const def of defs) {
    const value = entity.schema.value(row, def);
    if (def.type === "crm_multifield" && (!Array.isArray(value) || value.length === 0)) continue;
    out[def.name] = crmOutput(def, value);
  }
  return out;
}

import { cursorShape, malformedPage, pageRecords, recordsKeyOf } from "../calls/list-shapes";
import type { BatchOutcome } from "../client/client";
import { MAX_BATCH_COMMANDS } from "../client/client";
import { Bitrix24Error } from "../rest/errors";
import { isJsonObject } from "../rest/json-object";
import type { BatchCommand, OfflineEvent } from "../rest/types";

/**
 * The objects events name (DESIGN.md, "Doing the work"): which list method reads an event's object, the
 * batch commands that read a whole batch's objects (ONE list call per object type and 50 ids, never one per
 * event), and how their answers are matched back to the events.
 */

/** How the objects of one event family are read. The same shape is what users write in `entityMap`. */
export interface EntityRule {
  /** A list method, e.g. `crm.deal.list`. */
  method: string;
  /** Path(s) in EVENT_DATA to the object's id, dot-separated; the first present wins. */
  id: string | string[];
  /*
   * The rest default to what list-shapes.ts knows of the method (crm.*.list, crm.item.list, tasks.task.list,
   * user.get), else to the crm.*.list way.
   */
  /** Filter key the ids go into as an array. Default `@ID` (IN; crm.item.list: `@id`). */
  filterKey?: string;
  /** The parameter that holds the filter. Default `filter` (user.get: `FILTER`). */
  filterParam?: string;
  /** Fields to read. Default `["*", "UF_*"]`: every field incl. user fields; none for user.get. */
  select?: string[];
  /** The key of the records in the method's result: "" (the result is the array), `tasks`, `items`. */
  records?: string;
  /** The field of a returned record that holds its id. Default `ID` (crm.item.list, tasks: `id`). */
  idField?: string;
  /** Path in EVENT_DATA to a type id (smart processes) that goes into the read as `typeParam`. */
  typeIdPath?: string;
  typeParam?: string;
  /** More parameters for every read of this rule. */
  params?: Record<string, unknown>;
}

/** Event name (or a prefix ending in `*`) → rule. */
export type EntityMap = Record<string, EntityRule>;

/** What the msg gets: `entity` (null when there is none to give) and why. */
export interface EntityAttachment {
  entity: Record<string, unknown> | null;
  /** The object is gone: a delete event, or deleted since the event. */
  missing?: true;
  error?: { code: string; status: number; method: string; description: string };
}

/** A read that failed for a whole object type (scope, access): to be reported once, not per event. */
export interface EntityReadFailure {
  method: string;
  error: Bitrix24Error;
}

const CRM_FIELDS = ["*", "UF_*"];

function crmRules(entities: string[], suffixes: string[], rule: Omit<EntityRule, "id">): EntityMap {
  const map: EntityMap = {};
  for (const entity of entities)
    for (const suffix of suffixes)
      map[`ONCRM${entity}${suffix}`] = {
        id: "FIELDS.ID",
        ...rule,
        method: rule.method.replace("%", entity.toLowerCase()),
      };
  return map;
}

const DYNAMIC_ITEM: EntityRule = {
  method: "crm.item.list",
  id: "FIELDS.ID",
  select: ["*"],
  typeIdPath: "FIELDS.ENTITY_TYPE_ID",
  typeParam: "entityTypeId",
};
// The task filter reads an array under the plain field name as IN.
const TASK: EntityRule = { method: "tasks.task.list", id: ["FIELDS_AFTER.ID", "FIELDS_BEFORE.ID"], filterKey: "ID" };
const USER: EntityRule = { method: "user.get", id: ["FIELDS.ID", "ID"] };

/**
 * The built-in map (event names from the REST docs' event pages). Smart-process items and new (smart) invoices
 * (entityTypeId 31) share ONCRMDYNAMICITEM* with the type id in FIELDS.ENTITY_TYPE_ID; portals may also send
 * ONCRMDYNAMICITEMUPDATE_<type id>, which the prefix rules catch.
 */
export const BUILTIN_ENTITY_MAP: EntityMap = {
  ...crmRules(["DEAL", "QUOTE"], ["ADD", "UPDATE", "DELETE"], { method: "crm.%.list" }),
  // `*` leaves out the multi-fields (phones, e-mails, sites, messengers): they must be named.
  ...crmRules(["LEAD", "CONTACT", "COMPANY"], ["ADD", "UPDATE", "DELETE"], {
    method: "crm.%.list",
    select: [...CRM_FIELDS, "PHONE", "EMAIL", "WEB", "IM"],
  }),
  ...crmRules(["INVOICE"], ["ADD", "UPDATE", "DELETE", "SETSTATUS"], { method: "crm.%.list" }),
  ...crmRules(["ACTIVITY"], ["ADD", "UPDATE", "DELETE"], { method: "crm.%.list", select: ["*"] }),
  ...crmRules(["REQUISITE"], ["ADD", "UPDATE", "DELETE"], { method: "crm.%.list" }),
  ...crmRules(["PRODUCT"], ["ADD", "UPDATE", "DELETE"], { method: "crm.%.list", select: ["*"] }),
  ONCRMDYNAMICITEMADD: DYNAMIC_ITEM,
  ONCRMDYNAMICITEMUPDATE: DYNAMIC_ITEM,
  ONCRMDYNAMICITEMDELETE: DYNAMIC_ITEM,
  "ONCRMDYNAMICITEMADD_*": DYNAMIC_ITEM,
  "ONCRMDYNAMICITEMUPDATE_*": DYNAMIC_ITEM,
  "ONCRMDYNAMICITEMDELETE_*": DYNAMIC_ITEM,
  ONTASKADD: TASK,
  ONTASKUPDATE: TASK,
  ONTASKDELETE: TASK,
  ONUSERADD: USER,
  ONUSERUPDATE: USER,
};

function configError(description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_CONFIG", description: `entityMap: ${description}` });
}

function checkRule(key: string, value: unknown): EntityRule {
  if (!isJsonObject(value))
    throw configError(`"${key}" must map to an object like {"method": "crm.deal.list", "id": "FIELDS.ID"}`);
  const text = (name: string, required = false) => {
    const v = value[name];
    if (v === undefined && !required) return;
    if (typeof v !== "string" || (required && v.trim() === "")) {
      throw configError(`"${key}".${name} must be a ${required ? "non-empty " : ""}string, got ${JSON.stringify(v)}`);
    }
  };
  text("method", true);
  const id = value.id;
  const ids = Array.isArray(id) ? id : [id];
  if (ids.length === 0 || ids.some((p) => typeof p !== "string" || p.trim() === "")) {
    throw configError(
      `"${key}".id must be a path in EVENT_DATA like "FIELDS.ID" (or a list of them), got ${JSON.stringify(id)}`,
    );
  }
  for (const name of ["filterKey", "filterParam", "records", "idField", "typeIdPath", "typeParam"]) text(name);
  if (value.select !== undefined && (!Array.isArray(value.select) || value.select.some((s) => typeof s !== "string"))) {
    throw configError(`"${key}".select must be a list of field names, got ${JSON.stringify(value.select)}`);
  }
  if (value.params !== undefined && !isJsonObject(value.params)) {
    throw configError(`"${key}".params must be an object, got ${JSON.stringify(value.params)}`);
  }
  if ((value.typeIdPath === undefined) !== (value.typeParam === undefined)) {
    throw configError(`"${key}": typeIdPath and typeParam go together`);
  }
  return value as unknown as EntityRule;
}

/**
 * The map in effect: the built-in one, with the user's entries (JSON text: event name or `PREFIX*` → rule) added
 * over it. Throws INVALID_CONFIG naming the bad entry.
 */
export function parseEntityMap(text: string | undefined): EntityMap {
  if (text === undefined || text.trim() === "") return BUILTIN_ENTITY_MAP;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw configError(`not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!isJsonObject(parsed)) throw configError("must be a JSON object: event name → {method, id}");
  const map: EntityMap = { ...BUILTIN_ENTITY_MAP };
  for (const [key, value] of Object.entries(parsed)) {
    if (key.trim() === "" || key === "*") throw configError(`event name ${JSON.stringify(key)} is not one`);
    map[key.toUpperCase()] = checkRule(key, value);
  }
  return map;
}

/** The rule for an event name: an exact entry, else the longest matching `PREFIX*` entry. */
export function ruleFor(map: EntityMap, eventName: string): EntityRule | undefined {
  const name = eventName.toUpperCase();
  if (map[name]) return map[name];
  let best: string | undefined;
  for (const key of Object.keys(map)) {
    if (!key.endsWith("*")) continue;
    const prefix = key.slice(0, -1);
    if (name.startsWith(prefix) && (!best || prefix.length > best.length)) best = prefix;
  }
  return best === undefined ? undefined : map[`${best}*`];
}

/** `ONCRMDEALDELETE`, `ONTASKDELETE`, `ONCRMDYNAMICITEMDELETE_147`: the object is gone, nothing to read. */
export function isDeleteEvent(eventName: string): boolean {
  return /DELETE(_\d+)?$/i.test(eventName);
}

function at(value: unknown, path: string): unknown {
  let v = value;
  for (const part of path.split(".")) {
    if (part === "") continue;
    if (!isJsonObject(v)) return undefined;
    v = v[part];
  }
  return v;
}

function scalarId(v: unknown): string | undefined {
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  if (typeof v === "string" && v.trim() !== "") return v.trim();
  return undefined;
}

/** The object id an event names (the first of the rule's paths that holds one) and its type id, if the rule has one. */
function idsOf(event: OfflineEvent, rule: EntityRule): { paths: string[]; id?: string; typeId?: string } {
  const paths = Array.isArray(rule.id) ? rule.id : [rule.id];
  let id: string | undefined;
  for (const p of paths) {
    id = scalarId(at(event.EVENT_DATA, p));
    if (id !== undefined) break;
  }
  const typeId = rule.typeIdPath ? scalarId(at(event.EVENT_DATA, rule.typeIdPath)) : undefined;
  return { paths, id, typeId };
}

/** A failure as it travels in msg.bitrix24.entityError. */
function errorDetail(err: Bitrix24Error): NonNullable<EntityAttachment["error"]> {
  return { code: err.code, status: err.status, method: err.method, description: err.description };
}

interface ReadGroup {
  key: string;
  rule: EntityRule;
  typeId?: string;
  ids: string[];
  /** Who waits for this group's objects. */
  targets: Array<{ id: string; attach: (a: EntityAttachment) => void }>;
}

/** The reads of one batch of events: commands to send, then `attach` with their answers. */
export interface EntityPlan {
  commands: Record<string, BatchCommand>;
  /** Puts each event's object (or why there is none) through its callback; returns the failed reads. */
  attach(outcome: BatchOutcome | Bitrix24Error): EntityReadFailure[];
}

/**
 * Plans the reads for a batch of events. `attach(event, attachment)` is called once per mapped event, in
 * plan() already for deletes and events without an id, in plan.attach() for the others. Unmapped events get
 * nothing. Command keys are `<keyPrefix><n>`.
 */
export function planEntityReads(
  events: OfflineEvent[],
  map: EntityMap,
  onAttach: (index: number, attachment: EntityAttachment) => void,
  keyPrefix = "entity_",
): EntityPlan {
  const groups = new Map<string, ReadGroup>();
  events.forEach((event, index) => {
    const rule = ruleFor(map, event.EVENT_NAME);
    if (!rule) return;
    if (isDeleteEvent(event.EVENT_NAME)) {
      onAttach(index, { entity: null, missing: true });
      return;
    }
    const { paths, id, typeId } = idsOf(event, rule);
    if (id === undefined || (rule.typeIdPath && typeId === undefined)) {
      const missingPath = id === undefined ? paths.join(" or ") : rule.typeIdPath;
      onAttach(index, {
        entity: null,
        error: {
          code: "ENTITY_ID_MISSING",
          status: 0,
          method: rule.method,
          description: `EVENT_DATA of ${event.EVENT_NAME} has no ${missingPath}`,
        },
      });
      return;
    }
    const groupKey = `${rule.method}\u0000${typeId ?? ""}\u0000${JSON.stringify(rule)}`;
    let group = groups.get(groupKey);
    if (!group) {
      group = { key: groupKey, rule, typeId, ids: [], targets: [] };
      groups.set(groupKey, group);
    }
    if (!group.ids.includes(id)) group.ids.push(id);
    group.targets.push({ id, attach: (a) => onAttach(index, a) });
  });

  // One command per group and 50 ids (a list page is 50 records).
  const commands: Record<string, BatchCommand> = {};
  const chunks: Array<{ key: string; group: ReadGroup }> = [];
  for (const group of groups.values()) {
    for (let i = 0; i < group.ids.length; i += MAX_BATCH_COMMANDS) {
      const key = `${keyPrefix}${chunks.length}`;
      const { rule } = group;
      const shape = cursorShape(rule.method);
      const filterParam = rule.filterParam ?? shape?.filterParam ?? "filter";
      const baseFilter = rule.params?.[filterParam];
      const params: Record<string, unknown> = {
        ...rule.params,
        [filterParam]: {
          ...(isJsonObject(baseFilter) ? baseFilter : {}),
          [rule.filterKey ?? `@${shape?.queryId ?? "ID"}`]: group.ids.slice(i, i + MAX_BATCH_COMMANDS),
        },
      };
      const select = rule.select ?? (shape?.select === false ? [] : CRM_FIELDS);
      if (select.length > 0) params.select = select;
      if (rule.typeParam && group.typeId !== undefined) params[rule.typeParam] = group.typeId;
      commands[key] = { method: rule.method, params };
      chunks.push({ key, group });
    }
  }

  return {
    commands,
    attach(outcome) {
      const failures: EntityReadFailure[] = [];
      const found = new Map<ReadGroup, Map<string, Record<string, unknown>>>();
      const failed = new Map<ReadGroup, Bitrix24Error>();
      for (const { key, group } of chunks) {
        let error: Bitrix24Error | undefined;
        let records: unknown;
        if (outcome instanceof Error) error = outcome;
        else if (outcome.errors[key]) error = outcome.errors[key];
        else if (!(key in outcome.result)) {
          error = new Bitrix24Error({
            code: "ENTITY_NOT_READ",
            method: group.rule.method,
            description: "the read was not run",
          });
        } else {
          const result = outcome.result[key];
          const { method } = group.rule;
          const recordsKey = group.rule.records ?? cursorShape(method)?.recordsKey ?? recordsKeyOf(result) ?? "";
          records = pageRecords(result, recordsKey);
          if (!records) {
            error = malformedPage(method, `no list of records at result${recordsKey ? `.${recordsKey}` : ""}`);
          }
        }
        if (error) {
          const withMethod = error.method ? error : new Bitrix24Error({ ...error.toJSON(), method: group.rule.method });
          if (!failed.has(group)) {
            failed.set(group, withMethod);
            failures.push({ method: group.rule.method, error: withMethod });
          }
          continue;
        }
        const byId = found.get(group) ?? new Map<string, Record<string, unknown>>();
        found.set(group, byId);
        for (const r of records as unknown[]) {
          if (!isJsonObject(r)) continue;
          const id = scalarId(r[group.rule.idField ?? cursorShape(group.rule.method)?.recordId ?? "ID"]);
          if (id !== undefined) byId.set(id, r);
        }
      }
      for (const group of groups.values()) {
        const error = failed.get(group);
        for (const t of group.targets) {
          if (error) {
            t.attach({ entity: null, error: errorDetail(error) });
            continue;
          }
          const record = found.get(group)?.get(t.id);
          t.attach(record ? { entity: record } : { entity: null, missing: true });
        }
      }
      return failures;
    },
  };
}

/** The object an event names: its rule, id and type id (smart processes); undefined when unmapped or without id. */
export interface ObjectRef {
  rule: EntityRule;
  id: string;
  typeId?: string;
  /** `<method>:<type id>:<id>`: the same for an object's add, update and delete events. */
  key: string;
}

export function objectRefOf(event: OfflineEvent, map: EntityMap): ObjectRef | undefined {
  const rule = ruleFor(map, event.EVENT_NAME);
  if (!rule) return undefined;
  const { id, typeId } = idsOf(event, rule);
  if (id === undefined || (rule.typeIdPath && typeId === undefined)) return undefined;
  return { rule, id, typeId, key: `${rule.method}:${typeId ?? ""}:${id}` };
}

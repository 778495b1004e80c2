import { intval, isPlainObject, text } from "../php/param-values";
import type { Params, ParamValue } from "../php/php-params";
import type { Handler, PortalState } from "../server/method-types";
import { RestError } from "../server/rest-error";
import { isoFromSeconds } from "../server/rest-time";
import { camelCase } from "./camel-case";
import { scalarInput } from "./crm-entities";
import type { FieldDef, QueryPolicy, Schema } from "./list-query";
import { listPage, pagingOf, parseFilter, parseOrder } from "./list-query";
import { taskView } from "./object-fields";

/**
 * tasks.task.add/update/get/list/delete as their pages show them: `result: {task}` / `{tasks: [...]}`,
 * camelCase keys with values as strings, UPPER_CASE names in `select`, `filter` and `order`, list ordered by
 * ID descending unless told otherwise, `{"result": []}` for a task that does not exist, and the events
 * ONTASKADD / ONTASKUPDATE / ONTASKDELETE with FIELDS_BEFORE / FIELDS_AFTER.
 */

const taskError = (code: string, description: string): RestError => new RestError(code, description, 400);

const TASK_POLICY: QueryPolicy = {
  unknownFilterField: () => null,
  unknownOrderField: () => taskError("0", "Invalid sorting key (internal error)"),
  badDirection: () => null,
  filterNotObject: () =>
    taskError(
      "100",
      "Invalid value {} to match with parameter {filter}. Should be value of type array. (internal error)",
    ),
  orderNotObject: () =>
    taskError(
      "100",
      "Invalid value {} to match with parameter {order}. Should be value of type array. (internal error)",
    ),
  percentIsPattern: true,
};

function applyInput(schema: Schema, target: Record<string, unknown>, input: Params): void {
  for (const [key, raw] of Object.entries(input)) {
    const def = schema.find(key);
    if (!def || def.readOnly) continue;
    if (def.multiple) {
      const list = Array.isArray(raw) ? raw : raw === "" || raw === null ? [] : [raw];
      target[def.name] = def.type === "user" ? list.map((v) => Number.parseInt(String(v), 10)) : list.map(String);
      continue;
    }
    const value = scalarInput(def, raw);
    if (value !== undefined) target[def.name] = value;
  }
  if (target.STATUS !== undefined) target.REAL_STATUS = target.STATUS;
}

function fieldsParam(params: Params): Params {
  const fields = params.FIELDS;
  if (!isPlainObject(fields) || Object.keys(fields).length === 0) {
    throw taskError("100", "Could not find value for parameter {fields} (internal error)");
  }
  return fields;
}

function taskIdOf(params: Params): number {
  const raw = params.TASKID;
  if (raw === undefined || raw === null || raw === "") {
    throw taskError("100", "CTaskItem All parameters in the constructor must have real class type (internal error)");
  }
  const id = intval(raw, 0);
  if (id <= 0 || typeof raw === "object") throw taskError("0", "wrong task id");
  return id;
}

function selectOf(schema: Schema, raw: ParamValue | undefined): FieldDef[] {
  const names = Array.isArray(raw) ? raw.map((v) => String(v)) : [];
  if (names.length === 0 || names.includes("*")) return schema.fields;
  return schema.fields.filter(
    (d) => d.name === "ID" || names.some((n) => n.toUpperCase() === d.name || n === camelCase(d.name)),
  );
}

/** FIELDS_BEFORE / FIELDS_AFTER as the task event pages show them: `{ID}` or the text "undefined". */
function taskEvent(state: PortalState, params: Params, action: "ADD" | "UPDATE" | "DELETE", id: number): void {
  const ref = { ID: String(id) };
  const data = {
    FIELDS_BEFORE: action === "ADD" ? "undefined" : ref,
    FIELDS_AFTER: action === "DELETE" ? "undefined" : ref,
    IS_ACCESSIBLE_BEFORE: action === "ADD" ? "N" : "undefined",
    IS_ACCESSIBLE_AFTER: action === "DELETE" ? "N" : "undefined",
  };
  state.events.emit(`ONTASK${action}`, data, text(params.AUTH_CONNECTOR));
}

function noAccess(action: string): RestError {
  return taskError("1048582", `No access to ${action} the task`);
}

/** The enums tasks.task.getFields describes with `values` (its page's answer): what the task lists mean. */
const TASK_ENUMS: Record<string, Record<string, string>> = {
  MARK: { N: "Negative", P: "Positive" },
  PRIORITY: { "2": "High", "1": "Normal", "0": "Low" },
  STATUS: { "2": "Pending", "3": "In progress", "4": "Supposedly completed", "5": "Completed", "6": "Deferred" },
};

export const TASK_HANDLERS: Readonly<Record<string, Handler>> = {
  // `{fields: {NAME: {title, type, ...}}}` with UPPER_CASE names, though tasks.task.list answers camelCase ones.
  "tasks.task.getfields": (state) => {
    const fields: Record<string, unknown> = {};
    for (const def of state.crm.taskSchema.fields) {
      const values = TASK_ENUMS[def.name];
      fields[def.name] = values
        ? { title: def.title, type: "enum", values }
        : { title: def.title, type: def.type, ...(def.name === "ID" ? { primary: true } : {}) };
    }
    return { result: { fields } };
  },
  "tasks.task.add": (state, params) => {
    const input = fieldsParam(params);
    const fields: Record<string, unknown> = {};
    applyInput(state.crm.taskSchema, fields, input);
    if (!fields.TITLE) throw taskError("ERROR_CORE", "Task title not specified<br>");
    if (!fields.RESPONSIBLE_ID) throw taskError("ERROR_CORE", "Assignee not specified<br>");
    if (!state.crm.users.get(Number(fields.RESPONSIBLE_ID))) {
      throw taskError("ERROR_CORE", 'User specified in the "Assignee" field not found<br>');
    }
    const now = isoFromSeconds(Math.floor(Date.now() / 1000));
    const row = state.crm.tasks.insert({ ...fields, CREATED_DATE: now, CHANGED_DATE: now, STATUS_CHANGED_DATE: now });
    taskEvent(state, params, "ADD", row.id);
    return { result: { task: taskView(state.crm.taskSchema, row) } };
  },
  "tasks.task.update": (state, params) => {
    const id = taskIdOf(params);
    const input = fieldsParam(params);
    const row = state.crm.tasks.get(id);
    if (!row) throw noAccess("update");
    const changes: Record<string, unknown> = {};
    applyInput(state.crm.taskSchema, changes, input);
    const now = isoFromSeconds(Math.floor(Date.now() / 1000));
    if (changes.STATUS !== undefined && Number(changes.STATUS) === 5) changes.CLOSED_DATE = now;
    row.fields = { ...row.fields, ...changes, CHANGED_DATE: now };
    taskEvent(state, params, "UPDATE", row.id);
    return { result: { task: taskView(state.crm.taskSchema, row) } };
  },
  "tasks.task.get": (state, params) => {
    const id = taskIdOf(params);
    const row = state.crm.tasks.get(id);
    // The page: an empty array when the task does not exist or is not accessible.
    if (!row) return { result: [] };
    return { result: { task: taskView(state.crm.taskSchema, row, selectOf(state.crm.taskSchema, params.SELECT)) } };
  },
  "tasks.task.list": (state, params) => {
    const schema = state.crm.taskSchema;
    const filter = parseFilter(params.FILTER, schema, TASK_POLICY);
    const parsed = parseOrder(params.ORDER, schema, TASK_POLICY);
    const order = parsed.length > 0 ? parsed : [{ def: schema.find("ID") as FieldDef, desc: true }];
    const start = params.START === undefined ? 0 : intval(params.START, 0);
    const defs = selectOf(schema, params.SELECT);
    const page = listPage(state.crm.tasks, schema, filter, order, start);
    return { result: { tasks: page.rows.map((row) => taskView(schema, row, defs)) }, ...pagingOf(page, start) };
  },
  "tasks.task.delete": (state, params) => {
    const id = taskIdOf(params);
    if (!state.crm.tasks.delete(id)) throw noAccess("delete");
    taskEvent(state, params, "DELETE", id);
    return { result: { task: true } };
  },
};

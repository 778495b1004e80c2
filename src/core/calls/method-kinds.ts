/**
 * What a REST method name says about the call: whether it only reads (so a failed request may be sent again),
 * and which parameter names the object when a `.get`-style method is given a bare ID.
 *
 * The rule errs towards "may change data": a read taken for a write is merely not retried after a timeout,
 * while a write taken for a read could be applied twice.
 */

// The last segment of methods that only read, across modules: crm.deal.get, tasks.task.list, user.fields,
// crm.deal.userfield.list, task.planner.getlist, tasks.task.getFields, user.search.
const READ_VERBS = new Set(["get", "list", "fields", "getlist", "getfields", "search"]);

// Reads whose names do not end in such a verb.
const READ_METHODS = new Set([
  "app.info",
  "user.current",
  "user.admin",
  "profile",
  "scope",
  "methods",
  "server.time",
  "access.name",
]);

// Names that look like reads but change data: event.offline.get deletes what it returns unless clear=0, and
// even with clear=0 it opens a process that holds the records it returns.
const NOT_READS = new Set(["event.offline.get"]);

/**
 * True when the method only reads: its last segment is `get`, `list`, `fields`, `getlist`, `getfields` or
 * `search` (case-insensitive), or it is one of app.info, user.current, user.admin, profile, scope, methods,
 * server.time, access.name — except event.offline.get, which deletes or holds what it returns. `batch` is not
 * a read (its commands may be anything). Everything else may change data.
 */
export function isReadMethod(method: string): boolean {
  const name = method.trim().toLowerCase();
  if (NOT_READS.has(name)) return false;
  if (READ_METHODS.has(name)) return true;
  const verb = name.slice(name.lastIndexOf(".") + 1);
  return name.includes(".") && READ_VERBS.has(verb);
}

// Families that name their object otherwise than `id` (each method page's parameter table).
const ID_PARAMS: ReadonlyArray<{ prefix: string; param: string }> = [
  { prefix: "tasks.task.", param: "taskId" },
  { prefix: "user.", param: "ID" },
  { prefix: "department.", param: "ID" },
];

/**
 * The parameter that carries a bare ID for `method`: `taskId` for tasks.task.*, `ID` for user.get and
 * department.get (their filter fields), `id` otherwise (crm.deal.get, crm.contact.delete, disk.file.get, ...).
 * crm.item.* also needs entityTypeId, which an ID alone cannot give: undefined, so the caller refuses the item.
 */
export function idParam(method: string): string | undefined {
  const name = method.trim().toLowerCase();
  if (name.startsWith("crm.item.")) return undefined;
  return ID_PARAMS.find((f) => name.startsWith(f.prefix))?.param ?? "id";
}

import { CRM_HANDLERS } from "../crm/crm-methods";
import { ITEM_HANDLERS } from "../crm/item-methods";
import { STATUS_HANDLERS } from "../crm/status-methods";
import { TASK_HANDLERS } from "../crm/task-methods";
import { USER_HANDLERS } from "../crm/user-methods";
import { intval, text } from "../php/param-values";
import type { Params, ParamValue } from "../php/php-params";
import { isKnownEvent } from "../queue/known-events";
import { GET_FIELDS, LIST_FIELDS, parseFilter, parseOrder } from "../queue/queue-filter";
import type { QueueRecord } from "../queue/queue-record";
import type { CallContext, Handler, MethodAnswer, PortalState } from "./method-types";
import { argumentError, RestError, systemError } from "./rest-error";
import { isoFromSeconds } from "./rest-time";

/** The REST methods the sandbox serves, each a plain function of the portal state and the call's params. */

const LIST_PAGE_SIZE = 50;

export function eventView(record: QueueRecord): Record<string, unknown> {
  return {
    ID: String(record.id),
    TIMESTAMP_X: isoFromSeconds(record.tsSec),
    EVENT_NAME: record.eventName,
    EVENT_DATA: record.eventData,
    EVENT_ADDITIONAL: record.eventAdditional,
    MESSAGE_ID: record.messageId,
  };
}

export function listView(record: QueueRecord): Record<string, unknown> {
  return { ...eventView(record), PROCESS_ID: record.processId, ERROR: String(record.error) };
}

/** Every offline method: application (OAuth) authorization and an administrator behind the token. */
function requireOfflineAccess(state: PortalState, context: CallContext): void {
  if (context.authType !== "oauth") throw systemError("WRONG_AUTH_TYPE");
  if (!state.switches.admin) throw systemError("ACCESS_DENIED");
}

function requireApplication(context: CallContext): void {
  if (context.authType !== "oauth") throw systemError("WRONG_AUTH_TYPE");
}

function requireProcessId(params: Params): string {
  const value = params.PROCESS_ID;
  if (value === undefined || value === null || typeof value === "object") {
    throw argumentError("Argument 'PROCESS_ID' is null or empty");
  }
  return String(value);
}

/**
 * Plans without source keys refuse an auth_connector on every offline method (get, clear, error, list, and the
 * bindings), with the same WRONG_LICENSE code as clear=0 on plans without the extended mode; the text names
 * auth_connector, which is how a client tells the two apart (core's extended-mode.ts). Wording chosen.
 */
function requireConnectorAllowed(state: PortalState, params: Params): string {
  const connector = text(params.AUTH_CONNECTOR);
  if (connector !== "" && !state.switches.authConnector) {
    throw new RestError("WRONG_LICENSE", "Your license does not allow the auth_connector parameter", 403);
  }
  return connector;
}

function licenseError(feature: string): RestError {
  return new RestError("WRONG_LICENSE", `This feature is not enabled for the current license: ${feature}`, 403);
}

const offlineGet: Handler = (state, params, context) => {
  requireOfflineAccess(state, context);
  const clear = params.CLEAR === undefined ? true : intval(params.CLEAR, 1) !== 0;
  if (!clear && !state.switches.extendedMode) throw licenseError("extended offline events handling");
  const limit = params.LIMIT === undefined ? 50 : intval(params.LIMIT, 50);
  if (limit <= 0) throw argumentError("Value must be positive integer");
  const options = {
    conditions: parseFilter(params.FILTER, GET_FIELDS),
    order: parseOrder(params.ORDER, GET_FIELDS),
    limit,
    connector: requireConnectorAllowed(state, params),
    error: (intval(params.ERROR, 0) !== 0 ? 1 : 0) as 0 | 1,
  };
  const processId = text(params.PROCESS_ID);
  if (processId !== "") {
    const records = state.queue.reselect(processId, options, clear);
    return { result: { process_id: processId, events: records.map(eventView) } };
  }
  const taken = state.queue.take(options, clear);
  return { result: { process_id: taken.processId, events: taken.records.map(eventView) } };
};

function stringList(value: ParamValue | undefined, what: string): string[] | null {
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value)) throw argumentError(`Value must be array of ${what} values`);
  return value.filter((v) => typeof v === "string" || typeof v === "number").map(String);
}

/**
 * clear's lists as the source checks them (Api/Event.php): `message_id` first, an array of 32-character
 * strings; else `id`, an array of positive integers. A bad entry refuses the whole call with ERROR_ARGUMENT and
 * deletes nothing — dropping it and clearing the rest (or, with nothing left, the WHOLE process) is what a
 * portal never does. An EMPTY array is not bad: the source then clears every record of the process.
 */
function clearList<T>(
  value: ParamValue | undefined,
  what: string,
  read: (entry: ParamValue) => T | undefined,
): T[] | null {
  if (value === undefined || value === null || value === "") return null;
  if (!Array.isArray(value)) throw argumentError(`Value must be array of ${what} values`);
  return value.map((entry) => {
    const parsed = read(entry);
    if (parsed === undefined) throw argumentError(`Value must be array of ${what} values`);
    return parsed;
  });
}

const offlineClear: Handler = (state, params, context) => {
  requireOfflineAccess(state, context);
  const processId = requireProcessId(params);
  const connector = requireConnectorAllowed(state, params);
  const messageIds = clearList(params.MESSAGE_ID, "MESSAGE_ID", (m) =>
    typeof m === "string" && m.length === 32 ? m : undefined,
  );
  const ids =
    messageIds && messageIds.length > 0
      ? null
      : clearList(params.ID, "ID", (v) => {
          const n = typeof v === "string" || typeof v === "number" ? Number(v) : Number.NaN;
          return Number.isInteger(n) && n > 0 ? n : undefined;
        });
  state.queue.clear(processId, messageIds, ids, connector);
  return { result: true };
};

const offlineError: Handler = (state, params, context) => {
  requireOfflineAccess(state, context);
  const processId = requireProcessId(params);
  const messageIds = stringList(params.MESSAGE_ID, "MESSAGE_ID");
  if (messageIds === null) throw argumentError("Value must be array of MESSAGE_ID values");
  state.queue.markError(processId, messageIds, requireConnectorAllowed(state, params));
  return { result: true };
};

const offlineList: Handler = (state, params, context) => {
  requireOfflineAccess(state, context);
  const start = Math.max(0, intval(params.START, 0));
  const page = state.queue.list(
    parseFilter(params.FILTER, LIST_FIELDS),
    parseOrder(params.ORDER, LIST_FIELDS),
    start,
    LIST_PAGE_SIZE,
    requireConnectorAllowed(state, params),
  );
  const answer: MethodAnswer = { result: page.records.map(listView), total: page.total };
  if (start + LIST_PAGE_SIZE < page.total) answer.next = start + LIST_PAGE_SIZE;
  return answer;
};

const featureGet: Handler = (state, params) => {
  const code = text(params.CODE);
  if (code === "" || code === "0") throw new RestError("CODE_EMPTY", "CODE can't be empty", 400);
  // The method does not check codes: an unknown one may answer "Y" (feature.get's page warns about it).
  const value =
    code === "rest_offline_extended"
      ? state.switches.extendedMode
        ? "Y"
        : "N"
      : code === "rest_auth_connector"
        ? state.switches.authConnector
          ? "Y"
          : "N"
        : "Y";
  return { result: { value } };
};

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function eventName(params: Params): string {
  const name = text(params.EVENT).toUpperCase();
  if (name === "") throw argumentError("Argument 'EVENT' is null or empty");
  if (!/^ON[A-Z0-9_]+$/.test(name)) throw new RestError("ERROR_EVENT_NOT_FOUND", "Event not found", 400);
  return name;
}

/** event.bind takes only events a module registered (known-events.ts); unbind takes any name it may hold. */
function knownEventName(params: Params): string {
  const name = eventName(params);
  if (!isKnownEvent(name)) throw new RestError("ERROR_EVENT_NOT_FOUND", "Event not found", 400);
  return name;
}

function minTimeoutOf(options: ParamValue | undefined): number {
  if (options === undefined || options === null || typeof options !== "object" || Array.isArray(options)) return 1;
  const raw = (options as Record<string, ParamValue>).minTimeout ?? (options as Record<string, ParamValue>).MIN_TIMEOUT;
  return raw === undefined ? 1 : Math.max(0, intval(raw, 1));
}

const eventBind: Handler = (state, params, context) => {
  requireApplication(context);
  const event = knownEventName(params);
  const offline = text(params.EVENT_TYPE).toLowerCase() === "offline";
  const connector = offline ? requireConnectorAllowed(state, params) : "";
  if (offline) {
    if (!state.switches.admin) throw systemError("ACCESS_DENIED");
    if (event === "ONOFFLINEEVENT") {
      throw new RestError("ERROR_EVENT_NOT_FOUND", "Event is not available for offline mode", 400);
    }
    if (state.bindings.find(event, true, "", connector))
      throw new RestError("ERROR_CORE", "Handler already binded", 400);
    state.bindings.add({ event, handler: "", authType: "0", offline: true, connector, minTimeout: 1 });
    return { result: true };
  }
  const handler = text(params.HANDLER);
  if (handler === "") throw argumentError("Argument 'HANDLER' is null or empty");
  let url: URL;
  try {
    url = new URL(handler);
  } catch {
    throw new RestError("ERROR_HANDLER_URL_MISMATCH", "Wrong handler URL", 400);
  }
  // The portal wants a public host (with a dot); loopback is let through so tests and the demo can bind.
  if (!/^https?:$/.test(url.protocol) || (!url.hostname.includes(".") && !isLoopback(url.hostname))) {
    throw new RestError("ERROR_HANDLER_URL_MISMATCH", "Wrong handler URL", 400);
  }
  // The portal wants the handler on the host of the application's registered handler path.
  if (state.switches.handlerUrl && new URL(state.switches.handlerUrl).host !== url.host) {
    throw new RestError("ERROR_HANDLER_URL_MISMATCH", "Wrong handler URL", 400);
  }
  if (state.bindings.find(event, false, handler, "")) throw new RestError("ERROR_CORE", "Handler already binded", 400);
  state.bindings.add({
    event,
    handler,
    authType: String(intval(params.AUTH_TYPE, 0)),
    offline: false,
    connector: "",
    minTimeout: minTimeoutOf(params.OPTIONS),
  });
  return { result: true };
};

const eventUnbind: Handler = (state, params, context) => {
  requireApplication(context);
  const event = eventName(params);
  const offline = text(params.EVENT_TYPE).toLowerCase() === "offline";
  if (offline && !state.switches.admin) throw systemError("ACCESS_DENIED");
  const connector = offline ? requireConnectorAllowed(state, params) : "";
  // An online binding is named by its handler: without one the source refuses, rather than unbinding every
  // handler of the event.
  const handler = offline ? undefined : text(params.HANDLER);
  if (!offline && handler === "") throw argumentError("Argument 'HANDLER' is null or empty");
  const count = state.bindings.remove(event, offline, handler, connector);
  return { result: { count } };
};

const eventGet: Handler = (state, _params, context) => {
  requireApplication(context);
  return {
    result: state.bindings
      .all()
      .map((b) =>
        b.offline
          ? { event: b.event, connector_id: b.connector, offline: 1 }
          : { event: b.event, handler: b.handler, auth_type: b.authType, offline: 0 },
      ),
  };
};

const HANDLERS: Readonly<Record<string, Handler>> = {
  "event.offline.get": offlineGet,
  "event.offline.clear": offlineClear,
  "event.offline.error": offlineError,
  "event.offline.list": offlineList,
  "feature.get": featureGet,
  "event.bind": eventBind,
  "event.unbind": eventUnbind,
  "event.get": eventGet,
  ...CRM_HANDLERS,
  ...ITEM_HANDLERS,
  ...TASK_HANDLERS,
  ...USER_HANDLERS,
  ...STATUS_HANDLERS,
};

/** The scope a method needs; the event.* and feature.get methods need none an app could lack. */
function scopeOf(method: string): string | null {
  if (method.startsWith("crm.")) return "crm";
  if (method.startsWith("tasks.")) return "task";
  if (method.startsWith("user.")) return "user";
  return null;
}

export function isOfflineMethod(method: string): boolean {
  return method.startsWith("event.offline.");
}

export function hasMethod(method: string): boolean {
  return Object.hasOwn(HANDLERS, method);
}

/** Runs one method. Parameter names are case-insensitive, as the REST module upper-cases them. */
export function callMethod(state: PortalState, method: string, params: Params, context: CallContext): MethodAnswer {
  const handler = HANDLERS[method];
  if (!handler) throw systemError("ERROR_METHOD_NOT_FOUND");
  const scope = scopeOf(method);
  if (scope && state.switches.scopes && !state.switches.scopes.includes(scope)) throw systemError("insufficient_scope");
  const upper: Params = {};
  for (const [k, v] of Object.entries(params)) upper[k.toUpperCase()] = v;
  return handler(state, upper, context);
}

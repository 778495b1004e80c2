import { Bitrix24Error } from "../rest/errors";
import type { EventBinding } from "../rest/types";
import { OFFLINE_EVENT } from "./notification";

/**
 * "Manage subscriptions": which event.bind calls make the portal's bindings what the trigger node wants.
 * Only what is missing is bound; nothing is ever unbound (other flows or applications may rely on it).
 */

/** The parameters of one event.bind call, as OfflineEventsApi.bind takes them. */
export interface BindRequest {
  event: string;
  /** Omitted for the ONOFFLINEEVENT push binding: the portal's default type is online. */
  event_type?: "offline" | "online";
  handler?: string;
  auth_connector?: string;
  options?: Record<string, unknown>;
}

export interface SubscriptionWish {
  /** Events to keep bound as offline (upper case, as parseEventList returns them). */
  offlineEvents: string[];
  authConnector?: string;
  /** Where ONOFFLINEEVENT should be pushed; none = no push binding. */
  handler?: string;
  /** options.minTimeout of the ONOFFLINEEVENT binding (seconds). */
  minTimeout?: number;
}

const EVENT_NAME = /^[A-Z][A-Z0-9_]*$/;

/**
 * `"ONCRMDEALUPDATE, ontaskadd"` -> events ["ONCRMDEALUPDATE", "ONTASKADD"]; names that are not event names,
 * and ONOFFLINEEVENT (which cannot be bound as offline: it is the push itself), go to `rejected`.
 */
export function parseEventList(text: string | undefined): { events: string[]; rejected: string[] } {
  const events: string[] = [];
  const rejected: string[] = [];
  for (const part of String(text ?? "").split(/[\s,;]+/)) {
    const name = part.trim().toUpperCase();
    if (!name) continue;
    if (!EVENT_NAME.test(name) || name === OFFLINE_EVENT) rejected.push(part.trim());
    else if (!events.includes(name)) events.push(name);
  }
  return { events, rejected };
}

/**
 * The handler URL the portal must call: public base URL + Node-RED's httpNodeRoot + the trigger's path
 * (REFERENCE.md: the portal rejects handlers it cannot reach, so the base must be configured, not guessed).
 */
export function handlerUrl(publicUrl: string, httpNodeRoot: string | undefined, path: string): string {
  const base = publicUrl.trim().replace(/\/+$/, "");
  let parsed: URL;
  try {
    parsed = new URL(base);
  } catch {
    throw new Bitrix24Error({ code: "INVALID_CONFIG", description: `public URL "${publicUrl}" is not a URL` });
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    throw new Bitrix24Error({ code: "INVALID_CONFIG", description: `public URL "${publicUrl}" must be http(s)` });
  }
  const root = `/${String(httpNodeRoot ?? "/").replace(/^\/+|\/+$/g, "")}/`.replace(/\/{2,}/g, "/");
  return `${base}${root}${path.replace(/^\/+/, "")}`;
}

function same(a: unknown, b: unknown): boolean {
  return String(a ?? "") === String(b ?? "");
}

function isOffline(binding: EventBinding): boolean {
  return Number(binding.offline) === 1;
}

/** The event.bind calls still needed, given event.get's answer. */
export function planBindings(existing: EventBinding[], wish: SubscriptionWish): BindRequest[] {
  const plan: BindRequest[] = [];
  const connector = wish.authConnector?.trim() || undefined;
  for (const event of wish.offlineEvents) {
    const bound = existing.some(
      (b) => isOffline(b) && String(b.event).toUpperCase() === event && same(b.connector_id, connector),
    );
    if (!bound) plan.push({ event, event_type: "offline", ...(connector ? { auth_connector: connector } : {}) });
  }
  if (wish.handler) {
    const bound = existing.some(
      (b) => !isOffline(b) && String(b.event).toUpperCase() === OFFLINE_EVENT && same(b.handler, wish.handler),
    );
    if (!bound) {
      plan.push({
        event: OFFLINE_EVENT,
        handler: wish.handler,
        ...(wish.minTimeout !== undefined ? { options: { minTimeout: wish.minTimeout } } : {}),
      });
    }
  }
  return plan;
}

import type { CrmStore } from "../crm/crm-store";
import type { Params } from "../php/php-params";
import type { EventBindings } from "../queue/event-bindings";
import type { ObjectEvents } from "../queue/object-events";
import type { OfflineQueue } from "../queue/offline-queue";

/**
 * What a REST method of the sandbox is: a plain function of the portal's state and the call's params. The
 * method modules (rest-methods.ts for the offline queue, crm/ for objects, tasks and users) take these types
 * from here, and rest-methods.ts takes their handlers: so no method module imports the table that lists it.
 */

export interface PortalSwitches {
  extendedMode: boolean;
  admin: boolean;
  batchAllowsOffline: boolean;
  /** null = every scope. */
  scopes: string[] | null;
  /** The plan has source keys (feature rest_auth_connector); false: any auth_connector -> 403 WRONG_LICENSE. */
  authConnector: boolean;
  /** The application's registered handler path ("" = none): event.bind handlers must be on its host. */
  handlerUrl: string;
}

export interface PortalState {
  queue: OfflineQueue;
  bindings: EventBindings;
  switches: PortalSwitches;
  /** The portal's CRM objects, tasks and users. */
  crm: CrmStore;
  /** Queues the offline events a change of an object makes. */
  events: ObjectEvents;
}

export interface CallContext {
  /** OAuth application token, or an inbound webhook. */
  authType: "oauth" | "webhook";
  inBatch: boolean;
}

export interface MethodAnswer {
  result: unknown;
  total?: number;
  next?: number;
}

export type Handler = (state: PortalState, params: Params, context: CallContext) => MethodAnswer;

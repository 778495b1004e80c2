import type { EventBindings } from "./event-bindings";
import type { OfflineQueue } from "./offline-queue";

/**
 * Changes of portal objects (a crm.deal.update, a task added, ...) as the portal records them: one offline
 * event per offline binding of that event name (each binding has its own connector, so its own copy that
 * collapses on its own), except the binding whose `auth_connector` the write carried — that is how an
 * application keeps its own writes from coming back to it.
 */

// Who made the change: the portal records the acting user; one shared object keeps a million records light.
export const EVENT_ADDITIONAL = Object.freeze({ user_id: "1" });

export interface ObjectEventsDeps {
  queue: OfflineQueue;
  bindings: EventBindings;
  /** Called once per change that queued anything: an ONOFFLINEEVENT "hit". */
  notify: () => void;
}

export class ObjectEvents {
  constructor(private readonly deps: ObjectEventsDeps) {}

  /** Returns how many records it queued (or collapsed into). */
  emit(event: string, data: unknown, authConnector: string): number {
    const nowSec = Math.floor(Date.now() / 1000);
    let queued = 0;
    for (const binding of this.deps.bindings.all()) {
      if (!binding.offline || binding.event !== event) continue;
      if (authConnector !== "" && binding.connector === authConnector) continue;
      this.deps.queue.add(event, data, EVENT_ADDITIONAL, binding.connector, nowSec);
      queued++;
    }
    if (queued > 0) this.deps.notify();
    return queued;
  }
}

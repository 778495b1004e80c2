/**
 * The application's event bindings (event.bind / event.unbind / event.get). Online bindings carry a handler
 * URL; offline ones (`event_type=offline`) a connector. ONOFFLINEEVENT bindings also keep `minTimeout` and
 * when they last fired, for the notifier.
 */

export interface Binding {
  /** The handler's id, sent as `event_handler_id` with each push (as recorded event bodies carry it). */
  id: number;
  event: string;
  handler: string;
  authType: string;
  offline: boolean;
  connector: string;
  /** Seconds between ONOFFLINEEVENT notifications (options.minTimeout, default 1). */
  minTimeout: number;
  /** ms timestamp of the last notification sent for this binding. */
  lastPushAt: number;
}

export class EventBindings {
  private bindings: Binding[] = [];
  private nextId = 1;

  all(): readonly Binding[] {
    return this.bindings;
  }

  find(event: string, offline: boolean, handler: string, connector: string): Binding | undefined {
    return this.bindings.find(
      (b) =>
        b.event === event && b.offline === offline && (offline ? b.connector === connector : b.handler === handler),
    );
  }

  add(binding: Omit<Binding, "lastPushAt" | "id">): void {
    this.bindings.push({ ...binding, id: this.nextId++, lastPushAt: Number.NEGATIVE_INFINITY });
  }

  /** Removes what matches; an omitted handler (online) matches every handler of the event. */
  remove(event: string, offline: boolean, handler: string | undefined, connector: string): number {
    const before = this.bindings.length;
    this.bindings = this.bindings.filter(
      (b) =>
        !(
          b.event === event &&
          b.offline === offline &&
          (offline ? b.connector === connector : handler === undefined || b.handler === handler)
        ),
    );
    return before - this.bindings.length;
  }

  notificationTargets(): Binding[] {
    return this.bindings.filter((b) => !b.offline && b.event === "ONOFFLINEEVENT");
  }

  clear(): void {
    this.bindings = [];
  }
}

import { encodePhpQuery } from "../php/php-params";
import { portalFormPost } from "../server/form-post";
import type { Binding, EventBindings } from "./event-bindings";

/**
 * Sends ONOFFLINEEVENT to the handlers bound to it when the queue gets new records. Like the portal: with
 * minTimeout > 0 the first hit sends at once and later hits within minTimeout seconds are DROPPED (no
 * trailing notification); minTimeout 0 sends one per hit. The body is a PHP-style form post whose `auth`
 * block carries the app's tokens and application_token.
 */
export interface NotifierContext {
  bindings: EventBindings;
  /** The `auth` block: fresh tokens and the portal's identity. */
  auth: () => Record<string, string | number>;
  log: (line: string) => void;
  now?: () => number;
}

export class OfflineNotifier {
  sent = 0;
  private readonly inFlight = new Set<{ destroy: () => void }>();

  constructor(private readonly context: NotifierContext) {}

  /** One "hit": records were added to the queue. */
  hit(): void {
    const now = (this.context.now ?? Date.now)();
    for (const binding of this.context.bindings.notificationTargets()) {
      if (binding.minTimeout > 0 && now - binding.lastPushAt < binding.minTimeout * 1000) continue;
      binding.lastPushAt = now;
      this.send(binding, now);
    }
  }

  close(): void {
    for (const req of this.inFlight) req.destroy();
    this.inFlight.clear();
  }

  private send(binding: Binding, now: number): void {
    // `data` is left empty: the docs show {type, event, handler, minTimeout} but the vendor says it is empty
    // in practice, and a consumer must not rely on it (REFERENCE.md).
    const body = encodePhpQuery({
      event: "ONOFFLINEEVENT",
      event_handler_id: String(binding.id),
      ts: String(Math.floor(now / 1000)),
      auth: this.context.auth(),
    });
    let url: URL;
    try {
      url = new URL(binding.handler);
    } catch {
      return;
    }
    this.sent++;
    const req = portalFormPost(url, body, 5000);
    this.inFlight.add(req);
    const done = () => this.inFlight.delete(req);
    req.on("response", (res) => {
      res.resume();
      res.on("end", done);
      if ((res.statusCode ?? 0) >= 400)
        this.context.log(`ONOFFLINEEVENT -> ${binding.handler}: HTTP ${res.statusCode}`);
    });
    req.on("error", (err) => {
      done();
      this.context.log(`ONOFFLINEEVENT -> ${binding.handler} failed: ${err.message}`);
    });
    req.end(body);
  }
}

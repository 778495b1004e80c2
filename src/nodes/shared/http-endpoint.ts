import type { Request, RequestHandler } from "express";
import type { NodeAPI } from "node-red";
import { parseNotificationBody } from "../../core/queue/notification";
import { readLimitedBody } from "../../core/rest/http-body";

/**
 * What the endpoints on Node-RED's HTTP node server (the trigger's ONOFFLINEEVENT endpoint, the portal's
 * installation endpoint) share with core `http in`: routes registered behind httpNodeMiddleware, nothing when
 * httpNodeRoot is false, routes removed on close, urlencoded (extended) and JSON bodies.
 */

/** The part of an Express router the route removal needs (Express 4 `_router`, Express 5 `router`). */
interface RouterLike {
  stack: Array<{ route?: { stack?: Array<{ handle?: unknown }> } }>;
}

export function normalisePath(path: string | undefined): string {
  const trimmed = String(path ?? "").trim();
  if (!trimmed) return "";
  return trimmed.startsWith("/") ? trimmed : `/${trimmed}`;
}

/** Removes the routes that use `handler`, the way core `http in` cleans up on close. */
export function removeRoute(app: unknown, handler: RequestHandler): void {
  const holder = app as { _router?: RouterLike; router?: RouterLike };
  // Express 4 throws from the `router` getter, so it is read only when `_router` is absent (Express 5).
  const router = holder._router ?? holder.router;
  const stack = router?.stack;
  if (!Array.isArray(stack)) return;
  for (let i = stack.length - 1; i >= 0; i--) {
    if (stack[i].route?.stack?.some((layer) => layer.handle === handler)) stack.splice(i, 1);
  }
}

/** The settings' httpNodeMiddleware (one function or a list), run before every route of ours as before an `http in`. */
function nodeMiddleware(RED: NodeAPI): RequestHandler[] {
  const settings = RED.settings as { httpNodeMiddleware?: RequestHandler | RequestHandler[] };
  return typeof settings.httpNodeMiddleware === "function" || Array.isArray(settings.httpNodeMiddleware)
    ? [settings.httpNodeMiddleware].flat()
    : [];
}

/** POST route on RED.httpNode; false (and nothing registered) when httpNodeRoot is false. */
export function registerPost(RED: NodeAPI, path: string, handler: RequestHandler): boolean {
  if (RED.settings.httpNodeRoot === false) return false;
  RED.httpNode.post(path, ...nodeMiddleware(RED), handler);
  return true;
}

/**
 * The body as text (for replay keys) and as an object: read here within `limit`, or taken from an
 * httpNodeMiddleware that already consumed and parsed the stream.
 */
export async function readRequestBody(
  req: Request,
  limit: number,
): Promise<{ raw: string; body: Record<string, unknown> }> {
  const preParsed = (req as Request & { _body?: boolean })._body;
  if (preParsed && req.body && typeof req.body === "object" && !Buffer.isBuffer(req.body)) {
    const body = req.body as Record<string, unknown>;
    return { raw: JSON.stringify(body), body };
  }
  const raw = await readLimitedBody(req, limit);
  return { raw, body: parseNotificationBody(raw, req.headers["content-type"]) };
}

/**
 * A public endpoint gets scanned: refusals are reported at most once per `everyMs`, with a count of the ones in
 * between, so a flood cannot flood the log too.
 */
export class RefusalReporter {
  private last = Number.NEGATIVE_INFINITY;
  private unreported = 0;

  constructor(
    private readonly everyMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Calls `report` with the number of refusals not reported since the last report, or counts this one. */
  refused(report: (more: number) => void): void {
    const now = this.now();
    if (now - this.last < this.everyMs) {
      this.unreported++;
      return;
    }
    this.last = now;
    const more = this.unreported;
    this.unreported = 0;
    report(more);
  }
}

/** GET route on RED.httpNode behind httpNodeMiddleware (httpNodeAuth guards all of httpNodeRoot); false when httpNodeRoot is false. */
export function registerGet(RED: NodeAPI, path: string, handler: RequestHandler): boolean {
  if (RED.settings.httpNodeRoot === false) return false;
  RED.httpNode.get(path, ...nodeMiddleware(RED), handler);
  return true;
}

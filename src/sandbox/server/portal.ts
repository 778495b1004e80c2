import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { appInfo, sendCutOff } from "../limits/real-portal-limits";
import { authorize, token } from "../oauth/oauth-endpoints";
import type { Params } from "../php/php-params";
import type { SandboxOptions } from "../sandbox-types";
import { runBatch } from "./batch";
import { ExtraListeners, redirectToRenamed } from "./extra-listeners";
import { readBody, requestParams, sendJson } from "./http-io";
import type { CallContext } from "./method-types";
import { PortalCore } from "./portal-core";
import { RestError, systemError } from "./rest-error";
import { callMethod, isOfflineMethod } from "./rest-methods";
import { restTime } from "./rest-time";

const SEED_EVENT_NAMES = ["ONCRMDEALUPDATE", "ONCRMDEALADD", "ONCRMCONTACTUPDATE", "ONCRMLEADADD"];
// The per-method execution-time budget window the portal reports through time.operating.
const OPERATING_WINDOW_MS = 600_000;

// The per-method budget of server time in the window (REFERENCE.md "Calling the API").
const OPERATING_BUDGET_SEC = 480;

/** Answers a request to the control API (`/_sandbox/...`). */
export type ControlHandler = (
  portal: SandboxPortal,
  method: string,
  path: string,
  body: string,
  res: ServerResponse,
) => void;

/**
 * The sandbox portal on the wire: it listens (and its extra listeners: OAuth servers, a renamed address), routes
 * each request, and runs REST calls through what a real portal puts in their way (faults, auth, the rate limit,
 * the execution-time budget) to the methods. What it holds and how tests change it: portal-core.ts.
 */
export class SandboxPortal extends PortalCore {
  private readonly server: Server;
  private readonly sleepers = new Map<NodeJS.Timeout, () => void>();
  private closed = false;
  /** `/_sandbox/*` (control/control-api.ts), given by index.ts: the control API imports this class, not back. */
  private control: ControlHandler | undefined;

  private constructor(options: SandboxOptions) {
    super(options);
    this.server = createServer(this.onRequest);
  }

  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    this.route(req, res).catch((err: unknown) => {
      this.log(`sandbox: ${req.method} ${req.url} failed: ${err instanceof Error ? err.stack : String(err)}`);
      if (!res.headersSent) sendJson(res, 500, systemError("INTERNAL_SERVER_ERROR").body());
      else res.destroy();
    });
  };

  static async start(options: SandboxOptions, control?: ControlHandler): Promise<SandboxPortal> {
    const portal = new SandboxPortal(options);
    portal.control = control;
    // Longer than Node's 5 s default, as portals' front ends keep idle connections: a client reusing a socket
    // after a pause then does not race the server closing it.
    portal.server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      portal.server.once("error", reject);
      portal.server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
        portal.server.off("error", reject);
        resolve();
      });
    });
    const address = portal.server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    portal.url = `http://${host}:${address.port}`;
    portal.listeners = new ExtraListeners(portal.url, options.host ?? "127.0.0.1", portal.onRequest);
    portal.oauthUrl = await portal.listeners.startOAuth();
    portal.initCredentials(options.credentials ?? {}, options.handlerUrl ?? "");
    if (options.objects) portal.crm.seedAll(options.objects);
    if (options.secondOAuthServer) await portal.useSecondOAuthServer();
    if (options.events && options.events > 0) {
      portal.addGenerated(options.events, (i) => SEED_EVENT_NAMES[i % SEED_EVENT_NAMES.length], "", undefined, false);
    }
    return portal;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Calls waiting out injected latency finish at once; `closed` makes them answer nothing.
    for (const [timer, wake] of this.sleepers) {
      clearTimeout(timer);
      wake();
    }
    this.sleepers.clear();
    this.notifier.close();
    await this.listeners.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- HTTP ----

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://sandbox");
    const body = await readBody(req);
    const params = requestParams(url.search.slice(1), body, req.headers["content-type"]);
    const path = url.pathname;
    const role = this.listeners.roleOf(req);
    const tokenPath = /^\/oauth\/token\/?$/.test(path);
    if (role === "oauth" || role === "second-oauth") {
      const servedBy = role === "oauth" ? this.oauthUrl : (this.listeners.secondOAuth ?? "");
      if (tokenPath) return token(this.oauthApp, params, res, servedBy);
      return sendJson(res, 404, { error: "NOT_FOUND", error_description: "Not found" });
    }
    if (path.startsWith("/_sandbox/") && this.control) {
      return this.control(this, req.method ?? "GET", path, body, res);
    }
    // The OAuth server (oauth.bitrix.info's part) is not renamed with the portal: the portal's pages are.
    if (role === "renamed-away" && !tokenPath) {
      return redirectToRenamed(req, res, this.listeners.current, this.real.renameStatus);
    }
    if (/^\/oauth\/authorize\/?$/.test(path)) return authorize(this.oauthApp, params, res);
    if (tokenPath) return token(this.oauthApp, params, res, this.url);
    if (path.startsWith("/rest/")) return this.rest(path, params, req, res);
    sendJson(res, 404, { error: "NOT_FOUND", error_description: "Not found" });
  }

  private async rest(path: string, params: Params, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = Date.now();
    const segments = path.slice("/rest/".length).split("/").filter(Boolean);
    const webhook = segments.length === 3 ? { user: segments[0], secret: segments[1] } : null;
    const method = (segments[segments.length - 1] ?? "").toLowerCase().replace(/\.(json|xml)$/, "");
    this.requests.total++;
    this.requests.byMethod[method] = (this.requests.byMethod[method] ?? 0) + 1;
    if (method === "batch") this.requests.batches++;

    const faulty = !this.faults.methods || this.faults.methods.includes(method);
    if (faulty && this.faults.latencyMs) {
      // A request that would run past the portal's time limit is cut off at the limit.
      const cutOff = this.faults.latencyMs >= this.real.cutoffMs;
      await this.delay(cutOff ? this.real.cutoffMs : this.faults.latencyMs);
      if (cutOff && !this.closed) return sendCutOff(res, this.real.cutoffMs);
    }
    if (this.closed) return;
    if (faulty && chance(this.faults.dropBeforeRate)) {
      req.socket.destroy();
      return;
    }
    let answer: Record<string, unknown>;
    const holdsBefore = this.queue.holds;
    try {
      if (faulty && chance(this.faults.errorRate)) throw systemError(this.faults.errorCode ?? "INTERNAL_SERVER_ERROR");
      if (segments.length !== 1 && segments.length !== 3) throw systemError("ERROR_METHOD_NOT_FOUND");
      const context = this.authenticate(webhook, params);
      const bucket = context.authType === "webhook" ? this.webhookBucket : this.appBucket;
      if (this.rateLimitOn && !bucket.tryTake()) throw systemError("QUERY_LIMIT_EXCEEDED");
      delete params.auth;
      const result =
        method === "batch"
          ? runBatch(params, (inner, innerParams) => this.call(inner, innerParams, { ...context, inBatch: true }))
          : this.call(method, params, context);
      answer = { ...result };
    } catch (err) {
      const rest = err instanceof RestError ? err : systemError("INTERNAL_SERVER_ERROR");
      if (!(err instanceof RestError))
        this.log(`sandbox: ${method}: ${err instanceof Error ? err.stack : String(err)}`);
      if (rest.status === 503) this.requests.rejected503++;
      const resetAt = rest.code === "OPERATION_TIME_LIMIT" ? this.budgets.blockedUntil(method) : undefined;
      const time = resetAt === undefined ? {} : { time: this.spentTime(method, startedAt, resetAt) };
      sendJson(res, rest.status, { ...rest.body(), ...time });
      return;
    }
    if (faulty && this.faults.holdAnswerMs && this.queue.holds > holdsBefore) {
      await this.delay(this.faults.holdAnswerMs);
      if (this.closed) return;
    }
    if (faulty && chance(this.faults.dropAfterRate)) {
      req.socket.destroy();
      return;
    }
    const finishedAt = Date.now();
    const operating = this.spendOperating(method, finishedAt - startedAt, finishedAt);
    answer.time = restTime(startedAt, finishedAt, operating.seconds, operating.resetAt);
    sendJson(res, 200, answer);
  }

  private call(method: string, params: Params, context: CallContext): ReturnType<typeof callMethod> {
    if (context.inBatch && isOfflineMethod(method) && !this.switches.batchAllowsOffline) {
      throw systemError("ERROR_BATCH_METHOD_NOT_ALLOWED");
    }
    if (this.budgets.blockedUntil(method) !== undefined) throw systemError("OPERATION_TIME_LIMIT");
    if (method === "app.info") {
      return { result: appInfo(this.credentials.clientId, this.real.licenseFamily, this.memberId) };
    }
    return callMethod(this.state, method, params, context);
  }

  private authenticate(webhook: { user: string; secret: string } | null, params: Params): CallContext {
    if (webhook) {
      if (webhook.user !== "1" || webhook.secret !== this.webhookSecret) throw systemError("NO_AUTH_FOUND");
      return { authType: "webhook", inBatch: false };
    }
    const auth = params.auth;
    if (auth === undefined || auth === null || auth === "" || typeof auth === "object") {
      throw systemError("NO_AUTH_FOUND");
    }
    const check = this.tokens.checkAccess(String(auth));
    if (check === "expired") throw systemError("expired_token");
    if (check === "unknown") throw systemError(this.real.wrongTokenError);
    return { authType: "oauth", inBatch: false };
  }

  private spendOperating(method: string, ms: number, now: number): { seconds: number; resetAt: number } {
    let entry = this.operating.get(method);
    if (!entry || now - entry.windowStart >= OPERATING_WINDOW_MS) {
      entry = { seconds: 0, windowStart: now };
      this.operating.set(method, entry);
    }
    entry.seconds += ms / 1000;
    return {
      seconds: Math.round(entry.seconds * 1e6) / 1e6,
      resetAt: Math.floor((entry.windowStart + OPERATING_WINDOW_MS) / 1000),
    };
  }

  /** The `time` of an OPERATION_TIME_LIMIT answer: the budget spent, and when part of it comes back. */
  private spentTime(method: string, startedAt: number, resetAt: number): ReturnType<typeof restTime> {
    const spent = Math.max(OPERATING_BUDGET_SEC, this.operating.get(method)?.seconds ?? 0);
    return restTime(startedAt, Date.now(), spent, Math.ceil(resetAt / 1000));
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleepers.delete(timer);
        resolve();
      }, ms);
      this.sleepers.set(timer, resolve);
    });
  }
}

function chance(rate: number | undefined): boolean {
  return rate !== undefined && rate > 0 && Math.random() < rate;
}

import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { handleControl } from "../control/control-api";
import { CrmStore } from "../crm/crm-store";
import type {
  AddEventsSpec,
  Faults,
  Sandbox,
  SandboxCredentials,
  SandboxOptions,
  SandboxRecord,
  SandboxStats,
  SandboxSwitches,
} from "../index";
import { type InstallResult, type InstallShape, sendInstallation } from "../oauth/app-install";
import { authorize, type OAuthApp, token, tokenAnswer } from "../oauth/oauth-endpoints";
import { randomToken, TokenStore } from "../oauth/token-store";
import type { Params } from "../php/php-params";
import { EventBindings } from "../queue/event-bindings";
import { EVENT_ADDITIONAL, ObjectEvents } from "../queue/object-events";
import { OfflineNotifier } from "../queue/offline-notifier";
import { OfflineQueue } from "../queue/offline-queue";
import { runBatch } from "./batch";
import { ExtraListeners, redirectToRenamed } from "./extra-listeners";
import { readBody, requestParams, sendJson } from "./http-io";
import { LeakyBucket } from "./leaky-bucket";
import { appInfo, DEFAULT_CUTOFF_MS, SpentBudgets, sendCutOff } from "./real-portal-limits";
import { RestError, systemError } from "./rest-error";
import { type CallContext, callMethod, isOfflineMethod, type PortalState } from "./rest-methods";
import { isoFromSeconds, restTime } from "./rest-time";

const SEED_EVENT_NAMES = ["ONCRMDEALUPDATE", "ONCRMDEALADD", "ONCRMCONTACTUPDATE", "ONCRMLEADADD"];
const DEFAULT_RATE = { burst: 50, perSecond: 2 };
// The per-method execution-time budget window the portal reports through time.operating.
const OPERATING_WINDOW_MS = 600_000;

// The per-method budget of server time in the window (REFERENCE.md "Calling the API").
const OPERATING_BUDGET_SEC = 480;

/** Switches of what real portals do beyond the method pages (README "Real portals"). */
interface RealPortalSwitches {
  cutoffMs: number;
  wrongTokenError: "invalid_token" | "NO_AUTH_FOUND";
  licenseFamily: string;
  renameStatus: number;
}

interface Operating {
  seconds: number;
  windowStart: number;
}

export class SandboxPortal implements Sandbox {
  url = "";
  /** The OAuth server's own address (oauth.bitrix.info's part): not the portal's. */
  oauthUrl = "";
  credentials!: SandboxCredentials;
  private readonly server: Server;
  private readonly queue = new OfflineQueue();
  private readonly bindings = new EventBindings();
  readonly crm = new CrmStore();
  private readonly tokens: TokenStore;
  private readonly appBucket: LeakyBucket;
  private readonly webhookBucket: LeakyBucket;
  private rateLimitOn: boolean;
  private readonly switches: PortalState["switches"];
  private readonly state: PortalState;
  private readonly notifier: OfflineNotifier;
  private readonly memberId = randomToken();
  private readonly log: (line: string) => void;
  private webhookSecret = "";
  private faults: Faults = {};
  private generated = 0;
  private requests: SandboxStats["requests"] = { total: 0, byMethod: {}, rejected503: 0, batches: 0 };
  private readonly operating = new Map<string, Operating>();
  private readonly sleepers = new Map<NodeJS.Timeout, () => void>();
  private rate: { burst: number; perSecond: number };
  private tokenTtlSec: number;
  private oauthApp!: OAuthApp;
  private closed = false;
  // What real portals do beyond the method pages (README "Real portals"): set through options and control.
  private listeners!: ExtraListeners;
  private readonly budgets = new SpentBudgets();
  private real: RealPortalSwitches;

  private constructor(options: SandboxOptions) {
    this.log = options.log ?? (() => {});
    this.tokens = new TokenStore(options.tokenTtlSec ?? 3600);
    const rate = options.rateLimit === false ? DEFAULT_RATE : (options.rateLimit ?? DEFAULT_RATE);
    this.rateLimitOn = options.rateLimit !== false;
    this.rate = { ...rate };
    this.tokenTtlSec = options.tokenTtlSec ?? 3600;
    this.appBucket = new LeakyBucket(rate.burst, rate.perSecond);
    this.webhookBucket = new LeakyBucket(rate.burst, rate.perSecond);
    this.switches = {
      extendedMode: options.extendedMode ?? true,
      admin: options.admin ?? true,
      batchAllowsOffline: options.batchAllowsOffline ?? true,
      scopes: options.scopes ?? null,
      authConnector: options.authConnector ?? true,
      handlerUrl: "",
    };
    const events = new ObjectEvents({ queue: this.queue, bindings: this.bindings, notify: () => this.notifier.hit() });
    this.state = { queue: this.queue, bindings: this.bindings, switches: this.switches, crm: this.crm, events };
    this.notifier = new OfflineNotifier({
      bindings: this.bindings,
      auth: () => this.notificationAuth(),
      log: this.log,
    });
    this.real = {
      cutoffMs: options.cutoffMs ?? DEFAULT_CUTOFF_MS,
      wrongTokenError: options.wrongTokenError ?? "invalid_token",
      licenseFamily: options.licenseFamily ?? "project",
      renameStatus: 302,
    };
    this.server = createServer(this.onRequest);
  }

  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    this.route(req, res).catch((err: unknown) => {
      this.log(`sandbox: ${req.method} ${req.url} failed: ${err instanceof Error ? err.stack : String(err)}`);
      if (!res.headersSent) sendJson(res, 500, systemError("INTERNAL_SERVER_ERROR").body());
      else res.destroy();
    });
  };

  static async start(options: SandboxOptions): Promise<SandboxPortal> {
    const portal = new SandboxPortal(options);
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

  private initCredentials(fixed: Partial<SandboxCredentials>, handlerUrl: string): void {
    const fromUrl = fixed.webhookUrl ? /\/rest\/\d+\/([^/]+)\/?$/.exec(new URL(fixed.webhookUrl).pathname)?.[1] : "";
    this.webhookSecret = fromUrl || randomBytes(8).toString("hex");
    this.credentials = {
      clientId: fixed.clientId ?? `local.${randomBytes(7).toString("hex")}.${Date.now() % 100_000_000}`,
      clientSecret: fixed.clientSecret ?? randomBytes(24).toString("base64url"),
      accessToken: fixed.accessToken ?? randomToken(),
      refreshToken: fixed.refreshToken ?? randomToken(),
      applicationToken: fixed.applicationToken ?? randomToken(),
      webhookUrl: `${this.url}/rest/1/${this.webhookSecret}/`,
    };
    this.tokens.adopt(this.credentials.accessToken, this.credentials.refreshToken);
    this.oauthApp = {
      clientId: this.credentials.clientId,
      clientSecret: this.credentials.clientSecret,
      domain: new URL(this.url).host,
      handlerUrl: checkedHandlerUrl(handlerUrl),
      scopeList: () => (this.switches.scopes ?? ALL_SCOPES).join(","),
      url: this.url,
      memberId: this.memberId,
      tokens: this.tokens,
      oauthServer: this.oauthUrl,
      refreshServer: new Map(),
    };
    this.switches.handlerUrl = this.oauthApp.handlerUrl;
  }

  // ---- real portals: renames, OAuth regions, limits ----

  /** The portal's address now: `url` until a rename, then the newest address (`url` then answers 302). */
  get currentUrl(): string {
    return this.listeners.current;
  }

  /** The second OAuth server's base URL while token answers name it, else undefined. */
  get secondOAuthUrl(): string | undefined {
    return this.oauthApp.oauthServer === this.oauthUrl ? undefined : this.oauthApp.oauthServer;
  }

  async rename(status = 302): Promise<{ from: string; to: string }> {
    const moved = await this.listeners.rename();
    this.real.renameStatus = status;
    this.oauthApp.url = moved.to;
    this.oauthApp.domain = new URL(moved.to).host;
    this.credentials.webhookUrl = `${moved.to}/rest/1/${this.webhookSecret}/`;
    this.log(`sandbox: renamed ${moved.from} -> ${moved.to} (the old address answers ${status})`);
    return moved;
  }

  /**
   * From now on token answers (and the authorize redirect) name a second OAuth server; refresh tokens they carry
   * work only there, and the first server refuses them with invalid_grant, as another region's would.
   */
  async useSecondOAuthServer(): Promise<string> {
    this.oauthApp.oauthServer = await this.listeners.startSecondOAuth();
    return this.oauthApp.oauthServer;
  }

  /** `method`'s execution-time budget is spent for `forMs`: it answers 429 OPERATION_TIME_LIMIT until then. */
  spendBudget(method: string, forMs: number): number {
    return this.budgets.spend(method, forMs);
  }

  // ---- the programmatic control surface (Sandbox) ----

  addEvents(count: number, spec: AddEventsSpec = {}): void {
    const name = spec.name ?? "ONCRMDEALUPDATE";
    const additional = spec.userId === undefined ? EVENT_ADDITIONAL : Object.freeze({ user_id: spec.userId });
    this.addGenerated(count, () => name, spec.connector ?? "", spec.data, true, additional);
  }

  /** Shared by addEvents, the seed and the control API; one call is one "hit" for ONOFFLINEEVENT. */
  addGenerated(
    count: number,
    nameOf: (i: number) => string,
    connector: string,
    data: ((i: number) => unknown) | undefined,
    notify: boolean,
    additional: Readonly<Record<string, string>> = EVENT_ADDITIONAL,
  ): void {
    const nowSec = Math.floor(Date.now() / 1000);
    for (let i = 0; i < count; i++) {
      // By default every event is a different object, so nothing collapses unless the caller asks for it.
      const eventData = data ? data(i) : { FIELDS: { ID: String(++this.generated) } };
      this.queue.add(nameOf(i), eventData, additional, connector, nowSec);
    }
    if (notify && count > 0) this.notifier.hit();
  }

  /**
   * A REST method run inside the portal, as its own user (1) would through the UI: no HTTP, rate limit, faults
   * or scopes. Writes queue their offline events, so this is how a test or demo makes "someone edited deal 5".
   * A method error is thrown as `{error, error_description}`.
   */
  portalCall(method: string, params: Params = {}): { result: unknown; total?: number; next?: number } {
    try {
      return callMethod({ ...this.state, switches: { ...this.switches, scopes: null } }, method.toLowerCase(), params, {
        authType: "oauth",
        inBatch: false,
      });
    } catch (err) {
      if (err instanceof RestError) throw Object.assign(new Error(`${err.code}: ${err.description}`), err.body());
      throw err;
    }
  }

  stats(): SandboxStats {
    return {
      queue: { ...this.queue.counts(), holds: this.queue.holds },
      requests: { ...this.requests, byMethod: { ...this.requests.byMethod } },
      created: this.queue.created,
      deleted: this.queue.deleted,
      pushes: this.notifier.sent,
      oauth: { ...this.tokens.counts },
    };
  }

  records(): SandboxRecord[] {
    const out: SandboxRecord[] = [];
    for (const r of this.queue.all()) {
      out.push({
        ID: String(r.id),
        EVENT_NAME: r.eventName,
        MESSAGE_ID: r.messageId,
        PROCESS_ID: r.processId === "" ? null : r.processId,
        ERROR: String(r.error),
        CONNECTOR: r.connector,
        EVENT_DATA: r.eventData,
        TIMESTAMP_X: isoFromSeconds(r.tsSec),
      });
    }
    return out;
  }

  setFaults(faults: Faults): void {
    this.faults = { ...faults };
  }

  currentFaults(): Faults {
    return { ...this.faults };
  }

  setOptions(options: SandboxSwitches): void {
    if (options.rateLimit !== undefined) {
      this.rateLimitOn = options.rateLimit !== false;
      if (options.rateLimit) {
        this.rate = { ...options.rateLimit };
        this.appBucket.configure(options.rateLimit.burst, options.rateLimit.perSecond);
        this.webhookBucket.configure(options.rateLimit.burst, options.rateLimit.perSecond);
      }
    }
    if (options.extendedMode !== undefined) this.switches.extendedMode = options.extendedMode;
    if (options.admin !== undefined) this.switches.admin = options.admin;
    if (options.batchAllowsOffline !== undefined) this.switches.batchAllowsOffline = options.batchAllowsOffline;
    if (options.scopes !== undefined) this.switches.scopes = options.scopes;
    if (options.authConnector !== undefined) this.switches.authConnector = options.authConnector;
    if (options.handlerUrl !== undefined) {
      this.oauthApp.handlerUrl = checkedHandlerUrl(options.handlerUrl);
      this.switches.handlerUrl = this.oauthApp.handlerUrl;
    }
    if (options.cutoffMs !== undefined) this.real.cutoffMs = options.cutoffMs;
    if (options.wrongTokenError !== undefined) this.real.wrongTokenError = options.wrongTokenError;
    if (options.licenseFamily !== undefined) this.real.licenseFamily = options.licenseFamily;
    if (options.tokenTtlSec !== undefined) {
      this.tokenTtlSec = options.tokenTtlSec;
      this.tokens.setTtl(options.tokenTtlSec);
    }
  }

  currentOptions(): Record<string, unknown> {
    return {
      ...this.switches,
      rateLimit: this.rateLimitOn ? { ...this.rate } : false,
      tokenTtlSec: this.tokenTtlSec,
      cutoffMs: this.real.cutoffMs,
      wrongTokenError: this.real.wrongTokenError,
      licenseFamily: this.real.licenseFamily,
    };
  }

  bindingList(): ReturnType<EventBindings["all"]> {
    return this.bindings.all();
  }

  /** POSTs the application's installation to `url` (app-install.ts), with a fresh pair its OAuth server accepts. */
  install(url: string, shape: InstallShape = "auth"): Promise<InstallResult> {
    return sendInstallation(url, shape, this.notificationAuth());
  }

  expireTokens(): void {
    this.tokens.expireAll();
  }

  revokeRefreshTokens(): void {
    this.tokens.revokeRefresh();
  }

  reset(): void {
    this.queue.reset();
    this.crm.clear();
    this.generated = 0;
    this.bindings.clear();
    this.faults = {};
    this.requests = { total: 0, byMethod: {}, rejected503: 0, batches: 0 };
    this.notifier.sent = 0;
    this.operating.clear();
    this.budgets.clear();
    this.appBucket.empty();
    this.webhookBucket.empty();
    this.tokens.adopt(this.credentials.accessToken, this.credentials.refreshToken);
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
    if (path.startsWith("/_sandbox/")) return handleControl(this, req.method ?? "GET", path, body, res);
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

  /**
   * The `auth` block of an ONOFFLINEEVENT or installation POST: a fresh token pair of the app, as the portal sends
   * one. Unlike a token answer, its `domain` is the PORTAL and `scope` the granted scopes (on-offline-event.md,
   * on-app-install.md; test/contract/).
   */
  private notificationAuth(): Record<string, string | number> {
    const issued = this.tokens.issue();
    const answer = tokenAnswer(this.oauthApp, issued.accessToken, issued.refreshToken, issued.expiresIn);
    return {
      access_token: answer.access_token,
      expires: answer.expires,
      expires_in: answer.expires_in,
      scope: this.oauthApp.scopeList(),
      domain: this.oauthApp.domain,
      server_endpoint: answer.server_endpoint,
      status: answer.status,
      client_endpoint: answer.client_endpoint,
      member_id: answer.member_id,
      user_id: answer.user_id,
      refresh_token: answer.refresh_token,
      application_token: this.credentials.applicationToken,
    };
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

/** Every scope the sandbox serves; the default grant. */
const ALL_SCOPES = ["crm", "task", "user"];

function checkedHandlerUrl(url: string): string {
  if (url === "") return "";
  const parsed = new URL(url);
  if (!/^https?:$/.test(parsed.protocol)) throw new Error(`handlerUrl must be http(s): ${url}`);
  return parsed.toString();
}

function chance(rate: number | undefined): boolean {
  return rate !== undefined && rate > 0 && Math.random() < rate;
}

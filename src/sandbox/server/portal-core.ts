import { randomBytes } from "node:crypto";
import { CrmStore } from "../crm/crm-store";
import { LeakyBucket } from "../limits/leaky-bucket";
import { DEFAULT_CUTOFF_MS, SpentBudgets } from "../limits/real-portal-limits";
import { type InstallResult, type InstallShape, sendInstallation } from "../oauth/app-install";
import { type OAuthApp, tokenAnswer } from "../oauth/oauth-endpoints";
import { randomToken, TokenStore } from "../oauth/token-store";
import type { Params } from "../php/php-params";
import { EventBindings } from "../queue/event-bindings";
import { EVENT_ADDITIONAL, ObjectEvents } from "../queue/object-events";
import { OfflineNotifier } from "../queue/offline-notifier";
import { OfflineQueue } from "../queue/offline-queue";
import type {
  AddEventsSpec,
  Faults,
  Sandbox,
  SandboxCredentials,
  SandboxOptions,
  SandboxRecord,
  SandboxStats,
  SandboxSwitches,
} from "../sandbox-types";
import type { ExtraListeners } from "./extra-listeners";
import type { PortalState } from "./method-types";
import { RestError } from "./rest-error";
import { callMethod } from "./rest-methods";
import { isoFromSeconds } from "./rest-time";

const DEFAULT_RATE = { burst: 50, perSecond: 2 };

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

/**
 * What the sandbox portal holds (the queue, bindings, objects, tokens, buckets, switches and faults) and the
 * programmatic control surface of the Sandbox interface that tests, the CLI and the benchmark use. The portal on
 * the wire (portal.ts: listening, routing, the REST pipeline) extends it.
 */
export abstract class PortalCore implements Sandbox {
  url = "";
  /** The OAuth server's own address (oauth.bitrix.info's part): not the portal's. */
  oauthUrl = "";
  credentials!: SandboxCredentials;
  protected readonly queue = new OfflineQueue();
  protected readonly bindings = new EventBindings();
  readonly crm = new CrmStore();
  protected readonly tokens: TokenStore;
  protected readonly appBucket: LeakyBucket;
  protected readonly webhookBucket: LeakyBucket;
  protected rateLimitOn: boolean;
  protected readonly switches: PortalState["switches"];
  protected readonly state: PortalState;
  protected readonly notifier: OfflineNotifier;
  protected readonly memberId = randomToken();
  protected readonly log: (line: string) => void;
  protected webhookSecret = "";
  protected faults: Faults = {};
  protected generated = 0;
  protected requests: SandboxStats["requests"] = { total: 0, byMethod: {}, rejected503: 0, batches: 0 };
  protected readonly operating = new Map<string, Operating>();
  protected rate: { burst: number; perSecond: number };
  protected tokenTtlSec: number;
  protected oauthApp!: OAuthApp;
  // What real portals do beyond the method pages (README "Real portals"): set through options and control.
  protected listeners!: ExtraListeners;
  protected readonly budgets = new SpentBudgets();
  protected real: RealPortalSwitches;

  protected constructor(options: SandboxOptions) {
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
  }

  protected initCredentials(fixed: Partial<SandboxCredentials>, handlerUrl: string): void {
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

  abstract close(): Promise<void>;

  /**
   * The `auth` block of an ONOFFLINEEVENT or installation POST: a fresh token pair of the app, as the portal sends
   * one. Unlike a token answer, its `domain` is the PORTAL and `scope` the granted scopes (on-offline-event.md,
   * on-app-install.md; test/contract/).
   */
  protected notificationAuth(): Record<string, string | number> {
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
}

/** Every scope the sandbox serves; the default grant. */
const ALL_SCOPES = ["crm", "task", "user"];

function checkedHandlerUrl(url: string): string {
  if (url === "") return "";
  const parsed = new URL(url);
  if (!/^https?:$/.test(parsed.protocol)) throw new Error(`handlerUrl must be http(s): ${url}`);
  return parsed.toString();
}

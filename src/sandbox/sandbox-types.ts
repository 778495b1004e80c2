import type { CrmStore, SeedCounts } from "./crm/crm-store";
import type { InstallResult, InstallShape } from "./oauth/app-install";
import type { ParamValue } from "./php/php-params";

/**
 * What the sandbox is to its users (tests, the CLI, the benchmark): its options, switches, faults and the
 * programmatic API. index.ts exports these; the portal (server/portal.ts) and the control API implement them,
 * and import them from here rather than from index.ts, which starts the portal.
 */

export interface SandboxOptions {
  /** 0 = random (default). */
  port?: number;
  /** Default "127.0.0.1". */
  host?: string;
  /** Default {burst: 50, perSecond: 2}; false = off. */
  rateLimit?: { burst: number; perSecond: number } | false;
  /** Access-token lifetime, default 3600. */
  tokenTtlSec?: number;
  /** Feature rest_offline_extended, default true (false: clear=0 refused with a license error). */
  extendedMode?: boolean;
  /** The token belongs to an administrator, default true (false: offline methods -> ACCESS_DENIED). */
  admin?: boolean;
  /** Default true (false: offline methods in batch -> ERROR_BATCH_METHOD_NOT_ALLOWED). */
  batchAllowsOffline?: boolean;
  /** The application's (and webhook's) scopes, e.g. ["crm", "user"]; default null = every scope. A method of a
   * scope not listed (crm.* -> crm, tasks.* -> task, user.* -> user) answers 403 insufficient_scope. */
  scopes?: string[] | null;
  /** Seed this many events at start. */
  events?: number;
  /** Seed this many objects at start (they are the portal's existing data: no events). */
  objects?: SeedCounts;
  /** Fixed values instead of generated ones. */
  credentials?: Partial<SandboxCredentials>;
  /** Where log lines go (default: nowhere). The CLI passes stderr. */
  log?: (line: string) => void;
  /** A REST request running longer is cut off with a 504 page (default 60000, the real portal's limit). */
  cutoffMs?: number;
  /** What an unknown access token is answered with: 401 invalid_token (default) or 401 NO_AUTH_FOUND. */
  wrongTokenError?: "invalid_token" | "NO_AUTH_FOUND";
  /** app.info's LICENSE_FAMILY: "project" (default), "ent" (Enterprise), ... */
  licenseFamily?: string;
  /** The plan has auth_connector (source keys), default true; false: every offline method given a non-empty
   * auth_connector (get, clear, error, list, bind, unbind) answers 403 WRONG_LICENSE, as on lower plans. */
  authConnector?: boolean;
  /** The application's handler path, as in the local application's form, default "" (none): Authorize
   * redirects there (never to a `redirect_uri`), and event.bind handlers must be on its host. */
  handlerUrl?: string;
  /** Token answers name a second OAuth server from the start (see useSecondOAuthServer()). */
  secondOAuthServer?: boolean;
}

export interface SandboxCredentials {
  clientId: string;
  clientSecret: string;
  accessToken: string;
  refreshToken: string;
  applicationToken: string;
  /** `${url}/rest/1/<secret>/` */
  webhookUrl: string;
}

export interface Faults {
  /** Added to every REST answer. */
  latencyMs?: number;
  /** 0..1 share of REST calls answered with `errorCode`. */
  errorRate?: number;
  /** Default "INTERNAL_SERVER_ERROR" (status from the seeds' table; 429 for "OPERATION_TIME_LIMIT"). */
  errorCode?: string;
  /** 0..1: destroy the socket BEFORE applying the call. */
  dropBeforeRate?: number;
  /** 0..1: apply the call, then destroy the socket without answering. */
  dropAfterRate?: number;
  /**
   * A request that held records (a clear=0 get without process_id, alone or in a batch) is answered this many ms
   * after holding them: the window in which a consumer that dies has records held under a process id it never
   * learned (issue 24). `holds` in stats() counts such holds, so a test can act inside the window.
   */
  holdAnswerMs?: number;
  /** Limit faults to these methods (default all). */
  methods?: string[];
}

export interface SandboxStats {
  /** `holds`: gets that held records under a new process id, ever (a hold answered late counts at once). */
  queue: { total: number; unprocessed: number; held: number; error: number; holds: number };
  requests: { total: number; byMethod: Record<string, number>; rejected503: number; batches: number };
  /** Events ever added (collapsed changes not counted) / removed (by get clear=1, clear, error's dedup). */
  created: number;
  deleted: number;
  /** ONOFFLINEEVENT notifications sent. */
  pushes: number;
  /** Refresh grants answered with new tokens, and refused with invalid_grant (a refresh token spent twice). */
  oauth: { refreshes: number; invalidGrant: number };
}

export interface SandboxRecord {
  ID: string;
  EVENT_NAME: string;
  MESSAGE_ID: string;
  PROCESS_ID: string | null;
  ERROR: string;
  CONNECTOR: string;
  EVENT_DATA: unknown;
  TIMESTAMP_X: string;
}

export interface AddEventsSpec {
  name?: string;
  connector?: string;
  /** EVENT_DATA of the i-th event; the same name + data collapse into one record while it waits. Real records
   * may carry `false` or `null` here (event.offline.get's own example has `EVENT_DATA: false`). */
  data?: (i: number) => unknown;
  /** EVENT_ADDITIONAL.user_id, default "1"; "0" is what changes made by agents (no user) carry. */
  userId?: string;
}

export type SandboxSwitches = Partial<
  Pick<
    SandboxOptions,
    | "rateLimit"
    | "extendedMode"
    | "admin"
    | "batchAllowsOffline"
    | "tokenTtlSec"
    | "cutoffMs"
    | "wrongTokenError"
    | "licenseFamily"
    | "scopes"
    | "authConnector"
    | "handlerUrl"
  >
>;

export interface Sandbox {
  /** e.g. http://127.0.0.1:PORT — the portal URL (/rest/, /oauth/authorize/). */
  readonly url: string;
  /** The OAuth server's own address (/oauth/token/), another port: token answers name it in `domain` and
   * `server_endpoint`, as oauth.bitrix.info names itself. */
  readonly oauthUrl: string;
  readonly credentials: SandboxCredentials;
  addEvents(count: number, spec?: AddEventsSpec): void;
  /** The portal's objects: `crm.get("deal", 5)` answers what crm.deal.get would; `crm.seed("deal", 1000)`. */
  readonly crm: CrmStore;
  /** A REST method run inside the portal as its user would (no HTTP, limits, faults or scopes); writes queue
   * their offline events: `portalCall("crm.deal.update", {ID: 5, FIELDS: {TITLE: "x"}})`. Errors are thrown. */
  portalCall(method: string, params?: Record<string, ParamValue>): { result: unknown; total?: number; next?: number };
  stats(): SandboxStats;
  records(): SandboxRecord[];
  /** Replaces the current faults; {} = none. */
  setFaults(faults: Faults): void;
  setOptions(options: SandboxSwitches): void;
  /**
   * POSTs the application's installation to `url` as a portal does when the local application's form is saved
   * (`auth`: event=ONAPPINSTALL with auth[...]; `placement`: AUTH_ID/REFRESH_ID/PLACEMENT=DEFAULT), with a fresh
   * token pair and the application token. Resolves with the endpoint's answer; rejects when none came.
   */
  install(url: string, shape?: InstallShape): Promise<InstallResult>;
  /** Every issued access token expires now (next call -> 401 expired_token). */
  expireTokens(): void;
  /** Every refresh token becomes invalid (-> invalid_grant). */
  revokeRefreshTokens(): void;
  /** The portal's address now: `url` until a rename, then the newest address. */
  readonly currentUrl: string;
  /** The second OAuth server's base URL while token answers name it. */
  readonly secondOAuthUrl: string | undefined;
  /** Renames the portal: a new address serves it; the old ones answer `status` (default 302) to it for /rest/. */
  rename(status?: number): Promise<{ from: string; to: string }>;
  /** Token answers name a second OAuth server from now on; it alone accepts the refresh tokens they carry. */
  useSecondOAuthServer(): Promise<string>;
  /** `method`'s execution-time budget is spent for `forMs`: 429 OPERATION_TIME_LIMIT until then. Returns the reset (epoch ms). */
  spendBudget(method: string, forMs: number): number;
  /** Empties the queue, bindings, objects, counters and faults; the credentials stay valid. */
  reset(): void;
  close(): Promise<void>;
}

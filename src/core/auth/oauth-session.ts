import type { Agent as HttpAgent } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import axios from "axios";
import { Bitrix24Error } from "../rest/errors";
import { oauthServerFromEndpoint } from "../rest/portal-url";
import { fingerprint, type StoredTokens, type TokenSet, type TokenStore } from "../state/token-store";
import { describeTransportFailure, wireCause } from "../transport/rest-transport";
import { USER_AGENT } from "../transport/user-agent";

export interface OAuthSessionOptions {
  clientId: string;
  clientSecret: string;
  accessToken?: string;
  refreshToken?: string;
  /** Base URL, validated; the token URL is `${oauthServer}/oauth/token/`. Only the first guess: see serverEndpoint. */
  oauthServer: string;
  /** `server_endpoint` as the portal named it (installation, authorize): beats oauthServer until a token answer names another. */
  serverEndpoint?: string;
  store?: TokenStore;
  storeKey: string;
  timeoutMs: number;
  signal: AbortSignal;
  agents: { http: HttpAgent; https: HttpsAgent };
  /** After every token change (refresh here, or adoption of another process's rotation). */
  onTokens: (tokens: TokenSet) => void;
  /** After each HTTP request to the OAuth server, for the same counters as REST requests. */
  onRequest: (info: { method: string; status: number; ms: number }) => void;
  /** The refreshed tokens could not be written: the next restart would use a spent refresh token. */
  onStoreError: (err: Bitrix24Error) => void;
}

// Refresh this long before the known expiry, so a call does not set out with a token about to die.
const EXPIRY_MARGIN_MS = 60000;
const TOKEN_METHOD = "oauth/token";
// Refusals that asking again with the same refresh token cannot turn into tokens, whatever HTTP status they
// come with (PAYMENT_REQUIRED has been seen with 200): remembered like invalid_grant.
const PERMANENT_REFUSALS = new Set([
  "invalid_grant",
  "invalid_client",
  "unauthorized_client",
  "unsupported_grant_type",
  "invalid_scope",
  "PAYMENT_REQUIRED",
]);
// What to do first, for refusals whose OAuth wording does not say (a node's status shows ~60 characters).
const REFUSAL_ADVICE: Readonly<Record<string, string>> = {
  invalid_grant:
    "re-authorise the application (Authorize in the portal's configuration): the refresh token was refused " +
    "(expired, revoked or already used)",
  invalid_client:
    "check the client id and secret: the OAuth server does not know this application (deleted, or its secret changed)",
  PAYMENT_REQUIRED: "the application is not paid for on this portal (Bitrix24 Market subscription or plan)",
};

/**
 * The access/refresh token pair of one application on one portal. Refresh tokens are single-use, so every
 * refresh is single-flight in this process and, through the token store's lock and a re-read of the file,
 * across processes: whoever comes second adopts the tokens the first one obtained.
 */
export class OAuthSession {
  private tokens: TokenSet;
  /** Fingerprint written with every save: the deployed refresh token this lineage of tokens started from. */
  private lineage: string;
  private initialised: Promise<void> | undefined;
  private refreshing: Promise<void> | undefined;
  /** The refresh token the OAuth server refused, and how: asking again with it cannot succeed. */
  private refused: { refreshToken: string; error: Bitrix24Error } | undefined;
  /** Work under the store's lock that has started (lock file, load, save): see settled(). */
  private readonly storeWork = new Set<Promise<unknown>>();

  constructor(private readonly o: OAuthSessionOptions) {
    this.tokens = { accessToken: o.accessToken ?? "", refreshToken: o.refreshToken ?? "", expiresAt: 0 };
    if (oauthServerFromEndpoint(o.serverEndpoint)) this.tokens.serverEndpoint = o.serverEndpoint;
    this.lineage = fingerprint(o.refreshToken);
  }

  get current(): TokenSet {
    return { ...this.tokens };
  }

  /** Where refreshes go: the portal's own OAuth server once a token answer named it, else the configured guess. */
  get oauthServer(): string {
    return oauthServerFromEndpoint(this.tokens.serverEndpoint) ?? this.o.oauthServer;
  }

  /** The portal's new origin after a rename, as persisted beside the tokens (undefined: the configured one). */
  get portalOrigin(): string | undefined {
    const endpoint = this.tokens.clientEndpoint;
    if (!endpoint) return undefined;
    try {
      return new URL(endpoint).origin;
    } catch {
      return undefined;
    }
  }

  /**
   * The portal answered from `origin` after a rename: keep it beside the tokens, so a restart (and every other
   * process sharing the store) calls the new address at once instead of being redirected on every call.
   */
  async rememberPortal(origin: string): Promise<void> {
    // In memory first and at once: the call being redirected is resent before the file is written.
    this.tokens = { ...this.tokens, clientEndpoint: `${origin}/rest/` };
    const store = this.o.store;
    if (!store) return;
    try {
      // Inside the try: the caller does not wait for this (client.ts moveTo), so nothing may reject unheard.
      await this.init();
      await this.underLock(
        store,
        async () => {
          // The move is a fact about the portal, not about one lineage of tokens: it joins whatever is stored.
          const base = (await store.load(this.o.storeKey)) ?? this.toStored();
          await store.save(this.o.storeKey, {
            ...base,
            clientEndpoint: this.tokens.clientEndpoint,
            updatedAt: Date.now(),
          });
        },
        this.o.signal,
      );
    } catch (err) {
      // Cancelled by close(): not a store failure; the next start is redirected and writes the address then.
      if (this.o.signal.aborted) return;
      this.o.onStoreError(
        err instanceof Bitrix24Error
          ? err
          : new Bitrix24Error({ code: "TOKEN_STORE_ERROR", description: String(err) }, { cause: err }),
      );
    }
  }

  /** A token to send now: loads the store on first use and refreshes first when the token is missing/expired. */
  async accessToken(): Promise<string> {
    await this.init();
    if (!this.tokens.accessToken || this.knownExpired()) await this.refresh(this.tokens.accessToken);
    return this.tokens.accessToken;
  }

  /**
   * The portal rejected `failedToken`. Refreshes unless somebody already replaced that token; concurrent
   * callers share one refresh.
   */
  async refresh(failedToken: string): Promise<void> {
    await this.init();
    if (this.refreshing) return this.refreshing;
    if (this.tokens.accessToken && this.tokens.accessToken !== failedToken && !this.knownExpired()) return;
    this.refreshing = this.refreshUnderLock(failedToken).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** Takes the store's tokens when they are not ours (written by an installation); see Bitrix24Client.reloadTokens. */
  async reload(): Promise<void> {
    const store = this.o.store;
    if (!store) return;
    await this.init();
    await this.underLock(
      store,
      async () => {
        const stored = await store.load(this.o.storeKey);
        if (stored?.refreshToken && stored.refreshToken !== this.tokens.refreshToken) this.adopt(stored, true);
      },
      this.o.signal,
    );
  }

  /**
   * Resolves once no work under the store's lock is left. The client's close() aborts the signal first, so what
   * still waits for the lock gives up, and what holds it (a save of the new address written in the background
   * after a rename, say) finishes and removes its lock file: nothing writes into the state folder afterwards,
   * which Node-RED (and a test's clean-up) may remove as soon as the node closed.
   */
  async settled(): Promise<void> {
    while (this.storeWork.size > 0) await Promise.allSettled([...this.storeWork]);
  }

  /** The portal refused `token`: the next accessToken() refreshes (unless the token was replaced meanwhile). */
  invalidate(token: string): void {
    if (token && this.tokens.accessToken === token) this.tokens = { ...this.tokens, expiresAt: 1 };
  }

  /** Every use of the store's lock goes through here, so that settled() knows of it. */
  private underLock<T>(store: TokenStore, fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    // After close() nothing new starts: even a lock that would be refused at once creates the folder first.
    if (signal.aborted) return Promise.reject(signal.reason);
    const work = store.withLock(this.o.storeKey, fn, signal);
    this.storeWork.add(work);
    const forget = () => this.storeWork.delete(work);
    work.then(forget, forget);
    return work;
  }

  private knownExpired(): boolean {
    return this.tokens.expiresAt > 0 && Date.now() >= this.tokens.expiresAt - EXPIRY_MARGIN_MS;
  }

  /**
   * The fingerprint rule (DESIGN.md "Scale-out"): a file written from the same deployed refresh token holds the
   * rotated successor of that token, so the file wins; a file from another deployed token predates a
   * re-authorisation, so the deployed credentials win and are written down as the new lineage.
   */
  private init(): Promise<void> {
    this.initialised ??= this.load();
    return this.initialised;
  }

  private async load(): Promise<void> {
    const store = this.o.store;
    if (!store) return;
    const deployedFingerprint = fingerprint(this.o.refreshToken);
    await this.underLock(
      store,
      async () => {
        const stored = await store.load(this.o.storeKey);
        if (stored && stored.deployedFingerprint === deployedFingerprint) {
          this.adopt(stored, false);
          return;
        }
        if (!this.tokens.accessToken && !this.tokens.refreshToken) return;
        await store.save(this.o.storeKey, this.toStored());
      },
      this.o.signal,
    ).catch((err: unknown) => {
      // Next call tries again rather than caching the failure forever.
      this.initialised = undefined;
      throw err;
    });
  }

  private adopt(stored: StoredTokens, announce: boolean): void {
    this.tokens = {
      accessToken: stored.accessToken,
      refreshToken: stored.refreshToken,
      expiresAt: stored.expiresAt,
      // A file from before these fields existed keeps what this session knew.
      serverEndpoint: stored.serverEndpoint ?? this.tokens.serverEndpoint,
      clientEndpoint: stored.clientEndpoint ?? this.tokens.clientEndpoint,
    };
    this.lineage = stored.deployedFingerprint;
    if (announce) this.o.onTokens(this.current);
  }

  private toStored(): StoredTokens {
    return { ...this.tokens, deployedFingerprint: this.lineage, updatedAt: Date.now() };
  }

  private async refreshUnderLock(failedToken: string): Promise<void> {
    const store = this.o.store;
    if (!store) return this.refreshNow();
    await this.underLock(
      store,
      async () => {
        // Another process (or client) may have spent our refresh token already: its result is in the file.
        const stored = await store.load(this.o.storeKey);
        if (stored?.refreshToken && stored.refreshToken !== this.tokens.refreshToken) {
          this.adopt(stored, true);
          const usable = stored.accessToken && stored.accessToken !== failedToken && !this.knownExpired();
          if (usable) return;
        }
        try {
          await this.refreshNow();
        } catch (err) {
          // Refused: another instance may have spent this refresh token after all (its lock connection dropped
          // mid-refresh and the lock passed on). If the store holds a newer lineage, that is ours now.
          if (!(err instanceof Bitrix24Error) || err.code !== "invalid_grant") throw err;
          const again = await store.load(this.o.storeKey).catch(() => undefined);
          if (!again?.refreshToken || again.refreshToken === this.tokens.refreshToken) throw err;
          this.refused = undefined;
          this.adopt(again, true);
        }
      },
      this.o.signal,
    );
  }

  private async refreshNow(): Promise<void> {
    const refreshToken = this.tokens.refreshToken;
    if (!refreshToken) {
      throw new Bitrix24Error({ code: "NO_REFRESH_TOKEN", method: TOKEN_METHOD, retryable: false });
    }
    // A poller must not hammer the OAuth server with a dead token until someone re-authorises. A new error each
    // time: callers that report a failure once per error object (coalesced triggers) must report this one again.
    if (this.refused?.refreshToken === refreshToken) throw new Bitrix24Error(this.refused.error.toJSON());
    let fresh: TokenSet;
    try {
      fresh = await this.requestRefresh(refreshToken);
    } catch (err) {
      if (err instanceof Bitrix24Error && isPermanentRefusal(err)) this.refused = { refreshToken, error: err };
      throw err;
    }
    this.tokens = {
      ...fresh,
      serverEndpoint: fresh.serverEndpoint ?? this.tokens.serverEndpoint,
      clientEndpoint: this.tokens.clientEndpoint,
    };
    if (this.o.store) {
      try {
        await this.o.store.save(this.o.storeKey, this.toStored());
      } catch (err) {
        const error =
          err instanceof Bitrix24Error
            ? err
            : new Bitrix24Error({ code: "TOKEN_STORE_ERROR", description: String(err) }, { cause: err });
        this.o.onStoreError(error);
      }
    }
    this.o.onTokens(this.current);
  }

  private async requestRefresh(refreshToken: string): Promise<TokenSet> {
    const started = Date.now();
    const server = this.oauthServer;
    let status = 0;
    try {
      const response = await axios.get(`${server}/oauth/token/`, {
        params: {
          grant_type: "refresh_token",
          client_id: this.o.clientId,
          client_secret: this.o.clientSecret,
          refresh_token: refreshToken,
        },
        timeout: this.o.timeoutMs,
        signal: this.o.signal,
        httpAgent: this.o.agents.http,
        httpsAgent: this.o.agents.https,
        validateStatus: () => true,
        responseType: "text",
        transformResponse: [(data: unknown) => data],
        proxy: false,
        // The client secret and refresh token are in the query: they go to the named server and nowhere else.
        maxRedirects: 0,
        headers: { "User-Agent": USER_AGENT },
      });
      status = response.status;
      return parseTokenAnswer(response.status, String(response.data ?? ""));
    } catch (err) {
      if (err instanceof Bitrix24Error) throw err;
      if (this.o.signal.aborted) {
        throw new Bitrix24Error({ code: "CLOSED", method: TOKEN_METHOD }, { cause: wireCause(err) });
      }
      throw describeTransportFailure(err, TOKEN_METHOD, `the OAuth server ${server}`).error;
    } finally {
      this.o.onRequest({ method: TOKEN_METHOD, status, ms: Date.now() - started });
    }
  }
}

export function parseTokenAnswer(status: number, text: string): TokenSet {
  let body: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null) body = parsed as Record<string, unknown>;
  } catch {
    // handled below
  }
  if (body && typeof body.error === "string") {
    const code = body.error;
    const said = typeof body.error_description === "string" && body.error_description ? body.error_description : code;
    const advice = REFUSAL_ADVICE[code];
    throw new Bitrix24Error({
      code,
      status: status >= 400 ? status : undefined,
      method: TOKEN_METHOD,
      retryable: PERMANENT_REFUSALS.has(code) ? false : undefined,
      // The action first: a node's status shows only the first ~60 characters.
      description: advice ? `${advice} - ${said}` : typeof body.error_description === "string" ? said : undefined,
    });
  }
  if (!body || typeof body.access_token !== "string" || typeof body.refresh_token !== "string") {
    throw new Bitrix24Error({
      code: "MALFORMED_ANSWER",
      status,
      method: TOKEN_METHOD,
      retryable: status >= 500,
      description: `the OAuth server answered HTTP ${status} without access_token/refresh_token: ${text.slice(0, 200)}`,
    });
  }
  const expiresIn = Number(body.expires_in);
  const tokens: TokenSet = {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    expiresAt: Date.now() + (Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : 3600) * 1000,
  };
  if (oauthServerFromEndpoint(body.server_endpoint)) tokens.serverEndpoint = String(body.server_endpoint).trim();
  return tokens;
}

/** A refusal that the same refresh token will meet again: 4xx answers and the codes above, not transport trouble. */
function isPermanentRefusal(err: Bitrix24Error): boolean {
  if (PERMANENT_REFUSALS.has(err.code)) return true;
  if (err.retryable || err.code === "MALFORMED_ANSWER" || err.code === "TOKEN_STORE_ERROR") return false;
  return err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429;
}

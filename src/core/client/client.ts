import { EventEmitter, setMaxListeners } from "node:events";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { performance } from "node:perf_hooks";
import type { OAuthSession } from "../auth/oauth-session";
import { Bitrix24Error } from "../rest/errors";
import { validatePortalUrl } from "../rest/portal-url";
import type { BatchCommand, CallResult, RestTime } from "../rest/types";
import type { TokenSet } from "../state/token-store";
import { backoffDelay, type RetryPolicy, sleep } from "../transport/backoff";
import { batchRisk, callRisk, type DeliveryRisk, mayHaveRun, mayHaveRunError } from "../transport/delivery-safety";
import { MethodPauses } from "../transport/method-pauses";
import { movedOrigin } from "../transport/portal-move";
import { type RateGate, sharedBucket } from "../transport/rate-limiter";
import { type Exchange, operatingResetAt, RestTransport } from "../transport/rest-transport";
import { checkCommands, encodeCommands, METHOD_NAME, optionalNumber, readBatchAnswer } from "./batch-wire";
import { clientAuth } from "./client-auth";
import {
  type BatchOutcome,
  type CallOptions,
  type ClientOptions,
  DEFAULT_RATE_LIMIT,
  DEFAULT_TIMEOUT_MS,
  MAX_BATCH_COMMANDS,
  type MethodPause,
  type OperatingInfo,
  type PortalMove,
  positive,
  type RequestInfo,
  type RetryInfo,
  retryPolicy,
} from "./client-types";

export { validatePortalUrl } from "../rest/portal-url";
export type { TokenSet } from "../state/token-store";
// The client's types and defaults live in client-types.ts; callers name them by this file.
export * from "./client-types";

// The portal's answers to a stale or bad access token: refresh and resend once. A real portal may answer a
// wrong token with NO_AUTH_FOUND ("Wrong authorization data") rather than invalid_token.
const AUTH_REFRESH_CODES = new Set(["expired_token", "invalid_token", "NO_AUTH_FOUND"]);

function isOfflineMethod(method: string): boolean {
  return method.toLowerCase().startsWith("event.offline.");
}

function invalidArgument(method: string, description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_ARGUMENT", method, description });
}

/**
 * A Bitrix24 REST client for one portal: OAuth (with single-flight, store-coordinated refresh) or an inbound
 * webhook, a shared client-side leaky bucket, retries with backoff for what may succeed later — and never a
 * blind retry of an event.offline.get that deletes what it returns.
 *
 * Events: "rate-limited" (waitMs) when a call waits on the bucket or backs off after a 503/429;
 * "tokens" (TokenSet) after a refresh or after adopting another process's refreshed tokens;
 * "request" ({method, status, ms}) after each HTTP request; "retry" (RetryInfo) before each backoff;
 * "token-store-error" (Bitrix24Error) when refreshed tokens could not be written down;
 * "portal-moved" (PortalMove) when a redirect moved every later call to a renamed portal's new address;
 * "method-paused" (MethodPause) when OPERATION_TIME_LIMIT pauses one method until its budget resets;
 * "operating" (OperatingInfo) for each answer (and batch command) that reported `time.operating`.
 *
 * Its options and events are typed in client-types.ts, how it authenticates is client-auth.ts, a batch on the
 * wire is batch-wire.ts: this file is the call path (waits, the request, refresh, backoff, moves).
 */
export class Bitrix24Client extends EventEmitter {
  readonly portalUrl: string;
  readonly portalHost: string;
  /** "" for a webhook. */
  readonly clientId: string;

  private readonly bucket: RateGate | undefined;
  private readonly retry: RetryPolicy;
  private readonly session: OAuthSession | undefined;
  /** The webhook URL's path (`/rest/<user>/<secret>/`); its origin moves with the portal like everything else. */
  private readonly webhookPath: string | undefined;
  /** Where calls go: the configured portal URL until a redirect moves it (OAuth: also kept beside the tokens). */
  private origin: string;
  private readonly pauses = new MethodPauses();
  private readonly transport: RestTransport;
  private readonly closer = new AbortController();
  private readonly agents: Array<HttpAgent | HttpsAgent>;
  private refusesOfflineInBatch = false;
  private closed = false;

  constructor(options: ClientOptions) {
    super();
    // Every queued call and request in flight listens for close(): hundreds are normal, not a leak.
    setMaxListeners(0, this.closer.signal);
    this.portalUrl = validatePortalUrl(options.portalUrl);
    this.portalHost = new URL(this.portalUrl).host;
    this.origin = this.portalUrl;
    const timeoutMs = positive(options.timeoutMs, DEFAULT_TIMEOUT_MS, "timeoutMs");
    this.retry = retryPolicy(options.retry);

    const keepAlive = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };
    const fresh = { http: new HttpAgent({ keepAlive: false }), https: new HttpsAgent({ keepAlive: false }) };
    this.agents = [keepAlive.http, keepAlive.https, fresh.http, fresh.https];
    this.transport = new RestTransport({ timeoutMs, signal: this.closer.signal, keepAlive, fresh });

    const auth = clientAuth(options, this.portalHost, {
      timeoutMs,
      signal: this.closer.signal,
      agents: keepAlive,
      onTokens: (tokens: TokenSet) => this.emit("tokens", tokens),
      onRequest: (info: RequestInfo) => this.emit("request", info),
      onStoreError: (err: Bitrix24Error) => this.emit("token-store-error", err),
    });
    this.clientId = auth.clientId;
    this.session = auth.session;
    this.webhookPath = auth.webhook?.path;
    if (auth.webhook) this.origin = auth.webhook.origin;

    const rate = options.rateLimit === undefined ? DEFAULT_RATE_LIMIT : options.rateLimit;
    this.bucket =
      rate === false
        ? undefined
        : (options.rateGate ?? sharedBucket(`${this.portalHost}\n${this.clientId || "webhook"}`, rate));
  }

  /** True after the portal refused an offline method inside a batch; batch() then runs those singly. */
  get batchRefusesOffline(): boolean {
    return this.refusesOfflineInBatch;
  }

  /**
   * Someone wrote new tokens to the token store (the portal's installation, see installation.ts): take them now
   * rather than at the next refresh. They win like a re-authorisation. No-op for a webhook or without a store.
   */
  async reloadTokens(): Promise<void> {
    await this.session?.reload();
  }

  /** Where calls go now: the configured portal URL, or the new address of a renamed portal. */
  get currentPortalUrl(): string {
    return this.session?.portalOrigin ?? this.origin;
  }

  /** The bucket's level now (requests in it), its settings and the calls waiting; undefined without a limiter. */
  get bucketReading(): { level: number; burst: number; perSecond: number; waiting: number } | undefined {
    if (!this.bucket) return undefined;
    return { level: this.bucket.fill, ...this.bucket.settings, waiting: this.bucket.waiting };
  }

  /** Current tokens (OAuth only), e.g. for a config node that shows when they were last refreshed. */
  get tokens(): TokenSet | undefined {
    return this.session?.current;
  }

  async call<T>(
    method: string,
    params: Record<string, unknown> = {},
    options: CallOptions = {},
  ): Promise<CallResult<T>> {
    this.assertOpen(method);
    if (!METHOD_NAME.test(method)) throw invalidArgument(method, `"${method}" is not a REST method name`);
    const risk = callRisk(method, params, options.mayChangeData);
    const body = await this.execute(method, params, risk, options.signal);
    const result: CallResult<T> = { result: body.result as T };
    const total = optionalNumber(body.total);
    const next = optionalNumber(body.next);
    if (total !== undefined) result.total = total;
    if (next !== undefined) result.next = next;
    if (typeof body.time === "object" && body.time !== null) result.time = body.time as RestTime;
    return result;
  }

  /**
   * Up to 50 commands in one request (one slot of the bucket). More than 50 is refused without sending rather
   * than split: a split would break `halt` and the one-request accounting callers plan their rate around.
   */
  async batch(
    commands: Record<string, BatchCommand>,
    options: { halt?: boolean } & CallOptions = {},
  ): Promise<BatchOutcome> {
    this.assertOpen("batch");
    const keys = Object.keys(commands);
    if (keys.length > MAX_BATCH_COMMANDS) {
      throw invalidArgument("batch", `${keys.length} commands; a batch takes at most ${MAX_BATCH_COMMANDS}`);
    }
    checkCommands(commands);
    const halt = options.halt === true;
    const outcome: BatchOutcome = { result: {}, errors: {}, total: {}, next: {}, requests: 0 };
    // A command of a paused method would only be refused again: the batch waits for its budget too.
    await this.waitForPauses(
      keys.map((k) => commands[k].method),
      "batch",
    );
    if (keys.length === 0) return outcome;

    const single = new Set(this.refusesOfflineInBatch ? keys.filter((k) => isOfflineMethod(commands[k].method)) : []);
    const batched = keys.filter((k) => !single.has(k));
    let halted = false;
    if (batched.length > 0) {
      const subset = Object.fromEntries(batched.map((k) => [k, commands[k]]));
      readBatchAnswer(
        subset,
        await this.sendBatch(subset, halt, options),
        outcome,
        (method, resetAt) => this.pauseMethod(method, resetAt),
        (method, time) => this.reportOperating(method, time),
      );
      outcome.requests += 1;
      const refused = batched.filter(
        (k) => outcome.errors[k]?.code === "ERROR_BATCH_METHOD_NOT_ALLOWED" && isOfflineMethod(commands[k].method),
      );
      if (refused.length > 0) {
        this.refusesOfflineInBatch = true;
        for (const k of refused) {
          delete outcome.errors[k];
          single.add(k);
        }
        // With halt the portal stopped at the refusal: what came after it never ran, so run it too.
        if (halt) {
          const first = batched.indexOf(refused[0]);
          for (const k of batched.slice(first)) {
            if (!(k in outcome.result) && !(k in outcome.errors)) single.add(k);
          }
        }
      }
      halted = halt && Object.keys(outcome.errors).length > 0;
    }
    for (const key of keys) {
      if (!single.has(key) || halted) continue;
      const { method, params } = commands[key];
      outcome.requests += 1;
      try {
        const answer = await this.call<unknown>(method, params ?? {}, options);
        outcome.result[key] = answer.result;
        if (answer.total !== undefined) outcome.total[key] = answer.total;
        if (answer.next !== undefined) outcome.next[key] = answer.next;
      } catch (err) {
        if (err instanceof Bitrix24Error && (err.code === "CLOSED" || err.code === "ABORTED")) throw err;
        outcome.errors[key] =
          err instanceof Bitrix24Error
            ? err
            : new Bitrix24Error({ code: "INTERNAL_SERVER_ERROR", method, description: String(err) }, { cause: err });
        if (halt) halted = true;
      }
    }
    // Batch answers and single calls arrive in two rounds: hand results back in the caller's command order.
    outcome.result = Object.fromEntries(keys.filter((k) => k in outcome.result).map((k) => [k, outcome.result[k]]));
    return outcome;
  }

  /**
   * Rejects waiting calls with CLOSED, aborts requests in flight, clears timers and closes connections, all at
   * once. The promise resolves when the token file is no longer being written (the new address of a renamed
   * portal is saved in the background): a caller that removes the state folder next waits for it.
   */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.closer.abort(new Bitrix24Error({ code: "CLOSED" }));
      for (const agent of this.agents) agent.destroy();
    }
    return this.session?.settled() ?? Promise.resolve();
  }

  private async sendBatch(
    commands: Record<string, BatchCommand>,
    halt: boolean,
    options: CallOptions,
  ): Promise<Record<string, unknown>> {
    const cmd = encodeCommands(commands);
    const risk = batchRisk(commands, options.mayChangeData);
    return this.execute("batch", { halt: halt ? 1 : 0, cmd }, risk, options.signal);
  }

  /** Why a wait ended early: the client closed, or else the caller's signal aborted. */
  private stopped(method: string, cause?: Bitrix24Error): Bitrix24Error {
    if (this.closed) return new Bitrix24Error({ code: "CLOSED", method }, { cause });
    return new Bitrix24Error(
      { code: "ABORTED", method, description: "the call was cancelled before it was sent" },
      { cause },
    );
  }

  private assertOpen(method: string): void {
    if (this.closed) throw new Bitrix24Error({ code: "CLOSED", method });
  }

  /** One logical call: send, refresh once on a stale token, back off and resend what may succeed later. */
  private async execute(
    method: string,
    params: Record<string, unknown>,
    risk: DeliveryRisk | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Record<string, unknown>> {
    // Waits (bucket, backoff) end on close() or on the caller's signal; a request on the wire only on close().
    const waits = signal ? AbortSignal.any([this.closer.signal, signal]) : this.closer.signal;
    let authRetried = false;
    let attempt = 1;
    let hops = 0;
    for (;;) {
      const { exchange, token } = await this.sendOnce(method, params, risk !== undefined, waits);
      if (exchange.kind === "answer") {
        this.pauses.noteReset(method, operatingResetAt(exchange.body.time));
        this.reportOperating(method, exchange.body.time);
        return exchange.body;
      }
      if (exchange.kind === "moved") {
        // The portal did not run the call: repeat it, the same POST, at the new address. Not an attempt.
        hops += 1;
        this.moveTo(movedOrigin(exchange.location, exchange.httpStatus, method, hops), exchange.httpStatus);
        continue;
      }
      const error = exchange.error;
      if (this.closed || error.code === "CLOSED") throw new Bitrix24Error({ code: "CLOSED", method }, { cause: error });
      if (error.code === "ABORTED") throw error;

      if (this.session && AUTH_REFRESH_CODES.has(error.code) && token !== undefined) {
        if (authRetried) throw error;
        authRetried = true;
        // The next send refreshes first (shared by every call that saw this token fail).
        this.session.invalidate(token);
        continue;
      }
      if (error.code === "QUERY_LIMIT_EXCEEDED") this.bucket?.penalize();
      if (error.code === "OPERATION_TIME_LIMIT") {
        // Refused before running. This method waits for its budget (in sendOnce); the others keep going. The
        // pause holds even when this call gives up, so the caller's next try waits too instead of spinning.
        const retryAt = exchange.retryAfterMs === undefined ? undefined : Date.now() + exchange.retryAfterMs;
        this.pauseMethod(method, exchange.operatingResetAt ?? retryAt);
        if (attempt >= this.retry.maxAttempts) throw error;
        attempt += 1;
        continue;
      }
      if (risk && mayHaveRun(exchange)) throw mayHaveRunError(risk, method, error);
      if (!error.retryable || attempt >= this.retry.maxAttempts) throw error;

      let delay = backoffDelay(attempt, this.retry);
      if (exchange.retryAfterMs !== undefined) {
        delay = Math.min(this.retry.maxDelayMs, Math.max(delay, exchange.retryAfterMs));
      }
      if (error.status === 503 || error.status === 429) this.emit("rate-limited", delay);
      this.emit("retry", { method, attempt, delayMs: delay, error } satisfies RetryInfo);
      try {
        await sleep(delay, waits);
      } catch {
        throw this.stopped(method, error);
      }
      attempt += 1;
    }
  }

  private reportOperating(method: string, time: unknown): void {
    // Most clients have no listener (no metrics): skip the parsing then.
    if (this.listenerCount("operating") === 0 || typeof time !== "object" || time === null) return;
    const operating = optionalNumber((time as Record<string, unknown>).operating);
    if (operating === undefined) return;
    const resetAt = operatingResetAt(time);
    this.emit("operating", {
      method,
      operating,
      ...(resetAt === undefined ? {} : { resetAt }),
    } satisfies OperatingInfo);
  }

  private pauseMethod(method: string, resetAt: number | undefined): void {
    const until = this.pauses.pause(method, resetAt, this.retry.maxDelayMs);
    this.emit("method-paused", { method, until } satisfies MethodPause);
  }

  private async waitForPauses(methods: string[], method: string, waits = this.closer.signal): Promise<void> {
    try {
      await this.pauses.wait(methods, waits, (ms) => this.emit("rate-limited", ms));
    } catch {
      throw this.stopped(method);
    }
  }

  /** A redirect moved the portal: every later call (and, through the token file, every restart) goes there. */
  private moveTo(origin: string, status: number): void {
    const from = this.currentPortalUrl;
    this.origin = origin;
    if (origin === from) return;
    // Written down in the background: a failure reaches "token-store-error", and the move holds in memory anyway.
    void this.session?.rememberPortal(origin);
    this.emit("portal-moved", { from, to: origin, status } satisfies PortalMove);
  }

  private async sendOnce(
    method: string,
    params: Record<string, unknown>,
    lossy: boolean,
    waits: AbortSignal,
  ): Promise<{ exchange: Exchange; token?: string }> {
    if (waits.aborted) {
      return { exchange: { kind: "failure", httpStatus: 0, reached: false, error: this.stopped(method) } };
    }
    try {
      await this.waitForPauses([method], method, waits);
    } catch (error) {
      return { exchange: { kind: "failure", httpStatus: 0, reached: false, error: error as Bitrix24Error } };
    }
    if (this.bucket) {
      const wait = this.bucket.wouldWait();
      if (wait > 0) this.emit("rate-limited", wait);
      try {
        await this.bucket.acquire(waits);
      } catch {
        return { exchange: { kind: "failure", httpStatus: 0, reached: false, error: this.stopped(method) } };
      }
    }
    let url: string;
    let body: Record<string, unknown>;
    let token: string | undefined;
    if (this.session) {
      try {
        token = await this.session.accessToken();
      } catch (err) {
        const error =
          err instanceof Bitrix24Error
            ? err
            : new Bitrix24Error({ code: "TOKEN_STORE_ERROR", method, description: String(err) }, { cause: err });
        return { exchange: { kind: "failure", httpStatus: 0, reached: false, error } };
      }
      url = `${this.currentPortalUrl}/rest/${method}.json`;
      body = { ...params, auth: token };
    } else {
      url = `${this.origin}${this.webhookPath}${method}.json`;
      body = params;
    }
    const started = performance.now();
    const exchange = await this.transport.post(url, body, method, lossy);
    this.emit("request", {
      method,
      status: exchange.httpStatus,
      ms: performance.now() - started,
    } satisfies RequestInfo);
    return { exchange, token };
  }
}

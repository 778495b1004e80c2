import { type Bitrix24Client, MAX_BATCH_COMMANDS } from "../client/client";
import { Bitrix24Error } from "../rest/errors";
import { isJsonObject } from "../rest/json-object";
import type { BatchCommand } from "../rest/types";
import {
  type AllOpts,
  type AllOutcome,
  type CallProgress,
  failureOf,
  type ItemFailure,
  throwIfAborted,
  toBitrix24Error,
} from "./call-outcome";
import { readAll } from "./list-reader";
import { idParam, isReadMethod } from "./method-kinds";

export type { AllOpts, AllOutcome, CallProgress, ItemFailure } from "./call-outcome";
export { isReadMethod } from "./method-kinds";

/** `call`: one call; `each`: one call per item, 50 to a batch; `all`: every record of a list method. */
export type CallMode = "call" | "each" | "all";

export interface CallOpts {
  /** Added as `auth_connector` to every call that may change data (not to reads), unless the params name one. */
  authConnector?: string;
  /** Stops before the next request (and while waiting for the rate limiter); a request on the wire finishes. */
  signal?: AbortSignal;
}

export interface EachOpts extends CallOpts {
  onProgress?(p: CallProgress): void;
}

// A failure of the whole batch request that every later request would meet as well: sending them is pointless.
function failsEveryRequest(error: Bitrix24Error): boolean {
  return error.status === 401 || error.code === "TOKEN_STORE_ERROR" || error.code === "NO_REFRESH_TOKEN";
}

function hasKey(params: Record<string, unknown>, name: string): boolean {
  return Object.keys(params).some((k) => k.toLowerCase() === name);
}

/** The params a call is sent with: `auth_connector` added to writes when given and not already there. */
function withConnector(
  method: string,
  params: Record<string, unknown>,
  authConnector: string | undefined,
): Record<string, unknown> {
  // A hand-made batch carries its own commands: the connector belongs in them, not beside them.
  if (!authConnector || isReadMethod(method) || method.toLowerCase() === "batch") return params;
  if (hasKey(params, "auth_connector")) return params;
  return { ...params, auth_connector: authConnector };
}

/** An item of `each`: a parameter object, or a bare ID (number or non-empty string) for a `.get`-style method. */
function itemParams(method: string, item: unknown): Record<string, unknown> | Bitrix24Error {
  if (isJsonObject(item)) return item;
  if ((typeof item === "number" && Number.isFinite(item)) || (typeof item === "string" && item.trim() !== "")) {
    const param = idParam(method);
    if (param) return { [param]: item };
    return new Bitrix24Error({
      code: "INVALID_ARGUMENT",
      method,
      description: `${method} needs more than an ID (e.g. entityTypeId): give each item as a parameter object`,
    });
  }
  return new Bitrix24Error({
    code: "INVALID_ARGUMENT",
    method,
    description: `an item must be a parameter object or an ID, not ${item === null ? "null" : Array.isArray(item) ? "an array" : typeof item}`,
  });
}

/**
 * The engine of the bitrix24-call node: any REST method through one portal's client (its tokens, rate limiter
 * and retries). Reads are retried like every read of the client; a method that is not a known read
 * (`isReadMethod`) is sent with `mayChangeData`, so it fails with WRITE_MAY_HAVE_RUN rather than being sent again
 * once it may have reached the portal.
 */
export class RestCalls {
  constructor(private readonly client: Bitrix24Client) {}

  /** One call; `result` is the answer's result, with `total` / `next` when the portal gave them. */
  async call(
    method: string,
    params: Record<string, unknown>,
    opts: CallOpts = {},
  ): Promise<{ result: unknown; total?: number; next?: number }> {
    throwIfAborted(opts.signal, method);
    const answer = await this.client.call<unknown>(method, withConnector(method, params, opts.authConnector), {
      mayChangeData: !isReadMethod(method),
      signal: opts.signal,
    });
    const out: { result: unknown; total?: number; next?: number } = { result: answer.result };
    if (answer.total !== undefined) out.total = answer.total;
    if (answer.next !== undefined) out.next = answer.next;
    return out;
  }

  /**
   * One call per item, 50 commands to a batch request, results in input order (null where the item failed).
   * A failing command fails only its item; a failing batch request fails its 50 items (WRITE_MAY_HAVE_RUN for
   * writes that may have run) and the run goes on, except after an authorisation failure, which every later
   * request would meet too: the remaining items then fail with it unsent.
   */
  async each(
    method: string,
    items: unknown[],
    opts: EachOpts = {},
  ): Promise<{ results: unknown[]; failures: ItemFailure[]; requests: number }> {
    if (!Array.isArray(items)) {
      throw new Bitrix24Error({ code: "INVALID_ARGUMENT", method, description: "each needs an array of items" });
    }
    const write = !isReadMethod(method);
    const results: unknown[] = new Array(items.length).fill(null);
    const failures: ItemFailure[] = [];
    let requests = 0;
    let fatal: Bitrix24Error | undefined;
    for (let start = 0; start < items.length; start += MAX_BATCH_COMMANDS) {
      const end = Math.min(start + MAX_BATCH_COMMANDS, items.length);
      const commands: Record<string, BatchCommand> = {};
      const indexOf = new Map<string, number>();
      for (let i = start; i < end; i++) {
        const params = itemParams(method, items[i]);
        if (params instanceof Bitrix24Error) {
          failures.push(failureOf(i, method, params));
          continue;
        }
        const key = `i${i}`;
        commands[key] = { method, params: withConnector(method, params, opts.authConnector) };
        indexOf.set(key, i);
      }
      if (indexOf.size > 0) {
        if (fatal) {
          for (const i of indexOf.values()) failures.push(failureOf(i, method, fatal));
        } else {
          throwIfAborted(opts.signal, method);
          try {
            const outcome = await this.client.batch(commands, { mayChangeData: write, signal: opts.signal });
            requests += outcome.requests;
            for (const [key, i] of indexOf) {
              if (key in outcome.result) results[i] = outcome.result[key];
              else failures.push(failureOf(i, method, outcome.errors[key] ?? notRun(method)));
            }
          } catch (err) {
            const error = toBitrix24Error(err, method);
            // Closed, cancelled, or refused before sending (a bad method name): nothing more to do here.
            if (error.code === "CLOSED" || error.code === "ABORTED" || error.code === "INVALID_ARGUMENT") throw error;
            requests += 1;
            for (const i of indexOf.values()) failures.push(failureOf(i, method, error));
            if (failsEveryRequest(error)) fatal = error;
          }
        }
      }
      opts.onProgress?.({ done: end, total: items.length });
    }
    failures.sort((a, b) => a.index - b.index);
    return { results, failures, requests };
  }

  /**
   * Every record of a list method, handed to `onRecords` page by page (awaited before more is fetched), as
   * plain arrays of records whatever the method's answer shape. See list-reader.ts for the strategies.
   */
  async all(method: string, params: Record<string, unknown>, opts: AllOpts): Promise<AllOutcome> {
    if (!isReadMethod(method)) {
      throw new Bitrix24Error({
        code: "INVALID_ARGUMENT",
        method,
        description: `${method} is not a known read: mode "all" pages through list methods only (each page is a new call)`,
      });
    }
    return readAll(this.client, method, params, opts);
  }
}

function notRun(method: string): Bitrix24Error {
  return new Bitrix24Error({
    code: "ERROR_UNEXPECTED_ANSWER",
    method,
    description: "the batch answer has neither a result nor an error for this item",
  });
}

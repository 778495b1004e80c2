import { Bitrix24Error, codeForEmptyError } from "../rest/errors";
import { phpQueryString } from "../rest/php-query";
import type { BatchCommand, RestTime } from "../rest/types";
import { operatingResetAt } from "../transport/rest-transport";
import type { BatchOutcome } from "./client-types";

/**
 * A batch request on the wire (REFERENCE.md "batch"): the commands as `method?query` strings in PHP's encoding,
 * and the answer read back per command key. The client (client.ts) decides what goes in a batch and what is
 * re-run singly; this file knows only the format.
 */

/** A REST method name as the portal accepts one. */
export const METHOD_NAME = /^[A-Za-z][A-Za-z0-9_.]*$/;
const BATCH_KEY = /^[A-Za-z0-9_.:-]+$/;

/** Refuses, before anything is sent, a command key the portal would mangle or a command without a method. */
export function checkCommands(commands: Record<string, BatchCommand>): void {
  for (const key of Object.keys(commands)) {
    if (!BATCH_KEY.test(key)) throw invalidArgument(`command key "${key}" may use only A-Z a-z 0-9 _ . : -`);
    const method = commands[key]?.method;
    if (typeof method !== "string" || !METHOD_NAME.test(method)) {
      throw invalidArgument(`command "${key}" has no valid method name`);
    }
  }
}

function invalidArgument(description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_ARGUMENT", method: "batch", description });
}

/** `cmd` of a batch request: each command as `method?query`. */
export function encodeCommands(commands: Record<string, BatchCommand>): Record<string, string> {
  const cmd: Record<string, string> = {};
  for (const [key, command] of Object.entries(commands)) {
    const query = phpQuery(command.params);
    cmd[key] = query ? `${command.method}?${query}` : command.method;
  }
  return cmd;
}

export function asRecord(value: unknown): Record<string, unknown> {
  // PHP encodes an empty array as [] and a list-keyed one as a JSON array.
  if (Array.isArray(value)) return Object.fromEntries(value.map((item, index) => [String(index), item]));
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
}

export function optionalNumber(value: unknown): number | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Reads a batch answer into `outcome`: per command key its result, or its error (a command in neither did not
 * run: halt), total and next; `pause` hears of each method the portal paused (OPERATION_TIME_LIMIT), `operating`
 * of each succeeded command's `result_time` (the portal reports time only for those).
 */
export function readBatchAnswer(
  commands: Record<string, BatchCommand>,
  body: Record<string, unknown>,
  outcome: BatchOutcome,
  pause: (method: string, resetAt: number | undefined) => void,
  operating: (method: string, time: unknown) => void,
): void {
  const answer = asRecord(body.result);
  if (!("result" in answer) && !("result_error" in answer)) {
    throw new Bitrix24Error({
      code: "MALFORMED_ANSWER",
      method: "batch",
      description: "the batch answer has no result/result_error",
    });
  }
  const results = asRecord(answer.result);
  const errors = asRecord(answer.result_error);
  const times = asRecord(answer.result_time);
  const totals = asRecord(answer.result_total);
  const nexts = asRecord(answer.result_next);
  for (const key of Object.keys(commands)) {
    const method = commands[key].method;
    const error = errors[key];
    if (error !== undefined && error !== null) {
      const e = asRecord(error);
      const description =
        typeof e.error_description === "string" && e.error_description ? e.error_description : undefined;
      // crm.*.get's "Not found" comes with an empty code inside a batch too (errors.ts, codeForEmptyError).
      const code =
        typeof e.error === "string" && e.error
          ? e.error
          : description
            ? codeForEmptyError(description)
            : "ERROR_UNEXPECTED_ANSWER";
      outcome.errors[key] = new Bitrix24Error({ code, method, description });
      if (code === "OPERATION_TIME_LIMIT") pause(method, operatingResetAt(times[key]));
      continue;
    }
    operating(method, times[key]);
    if (key in results) outcome.result[key] = results[key];
    const total = optionalNumber(totals[key]);
    const next = optionalNumber(nexts[key]);
    if (total !== undefined) outcome.total[key] = total;
    if (next !== undefined) outcome.next[key] = next;
  }
  if (typeof body.time === "object" && body.time !== null) outcome.time = body.time as RestTime;
}

function phpQuery(params: Record<string, unknown> | undefined): string {
  return params ? phpQueryString(params) : "";
}

import { type Params, type ParamValue, parsePhpQuery } from "../php/php-params";
import { substituteReferences } from "./batch-references";
import type { MethodAnswer } from "./method-types";
import { RestError, systemError } from "./rest-error";
import { type RestTime, restTime } from "./rest-time";

/**
 * `batch`: up to 50 `cmd[<key>]=<method>?<PHP query>` commands run in order in one request (counted once by
 * the rate limiter). The answer mirrors PHP's json_encode of arrays: a section with no entries is `[]`, and
 * list-keyed commands (`cmd[0]`, `cmd[1]`) give JSON arrays, not objects.
 */

export const BATCH_LIMIT = 50;

export type CommandRunner = (method: string, params: Params) => MethodAnswer;

interface Section {
  [key: string]: unknown;
}

function phpArray(section: Section, listKeys: boolean): unknown {
  const keys = Object.keys(section);
  if (keys.length === 0) return [];
  if (listKeys && keys.every((k, i) => k === String(i))) return keys.map((k) => section[k]);
  return section;
}

function commandsOf(cmd: ParamValue | undefined): { entries: [string, string][]; listKeys: boolean } {
  if (Array.isArray(cmd)) return { entries: cmd.map((c, i) => [String(i), String(c)]), listKeys: true };
  if (cmd !== null && typeof cmd === "object") {
    return {
      entries: Object.entries(cmd).map(([k, c]) => [k, typeof c === "object" ? "" : String(c)]),
      listKeys: false,
    };
  }
  return { entries: [], listKeys: false };
}

export function runBatch(params: Params, run: CommandRunner): { result: Record<string, unknown> } {
  const upper: Params = {};
  for (const [k, v] of Object.entries(params)) upper[k.toUpperCase()] = v;
  const { entries, listKeys } = commandsOf(upper.CMD);
  if (entries.length > BATCH_LIMIT) throw systemError("ERROR_BATCH_LENGTH_EXCEEDED");
  const halt = upper.HALT !== undefined && String(upper.HALT) !== "0" && upper.HALT !== false && upper.HALT !== "";
  const result: Section = {};
  const errors: Section = {};
  const totals: Section = {};
  const nexts: Section = {};
  const times: Record<string, RestTime> = {};
  for (const [key, command] of entries) {
    const startedAt = Date.now();
    const q = command.indexOf("?");
    const method = (q < 0 ? command : command.slice(0, q))
      .trim()
      .toLowerCase()
      .replace(/\.json$/, "");
    const query = q < 0 ? "" : command.slice(q + 1);
    try {
      if (method === "batch") throw systemError("ERROR_BATCH_METHOD_NOT_ALLOWED");
      const answer = run(method, substituteReferences(parsePhpQuery(query), result));
      result[key] = answer.result;
      if (answer.total !== undefined) totals[key] = answer.total;
      if (answer.next !== undefined) nexts[key] = answer.next;
      // Only commands that ran have a time: the batch page's failure examples answer `result_time: []`.
      times[key] = restTime(startedAt, Date.now(), 0);
    } catch (err) {
      const rest = err instanceof RestError ? err : systemError("INTERNAL_SERVER_ERROR");
      errors[key] = rest.body();
    }
    if (halt && errors[key] !== undefined) break;
  }
  return {
    result: {
      result: phpArray(result, listKeys),
      result_error: phpArray(errors, listKeys),
      result_total: phpArray(totals, listKeys),
      result_next: phpArray(nexts, listKeys),
      result_time: phpArray(times as Section, listKeys),
    },
  };
}

import type { Params, ParamValue } from "../php/php-params";

/**
 * `$result[<key>][<path>]...` in a batch command: replaced by that part of an earlier command's result, in
 * command order. The reference is looked for in the command's PARSED parameter values, so it works written
 * plainly (`filter[>ID]=$result[p1][49][ID]`) and URL-encoded (the batch page's HTTP example double-encodes
 * it). A value that is exactly one reference takes the referenced value itself (a list stays a list); a
 * reference inside longer text is replaced by the value's text. A reference whose command failed, whose key
 * is unknown or whose path is missing or null (a page shorter than the index asked for) is left as written,
 * as PHP's isset() check fails there: the method then sees the literal `$result[...]` text.
 */

const REFERENCE = /\$result((?:\[[^\]]*\])+)/g;
const WHOLE = /^\$result((?:\[[^\]]*\])+)$/;

type Results = Readonly<Record<string, unknown>>;

function resolve(path: string, results: Results): unknown {
  const parts = [...path.matchAll(/\[([^\]]*)\]/g)].map((m) => m[1]);
  let value: unknown = results;
  for (const part of parts) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value === null ? undefined : value;
}

function asParam(value: unknown): ParamValue {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.parse(JSON.stringify(value)) as ParamValue;
  return value as ParamValue;
}

function substituteValue(value: ParamValue, results: Results): ParamValue {
  if (typeof value === "string") {
    if (!value.includes("$result[")) return value;
    const whole = WHOLE.exec(value);
    if (whole) {
      const found = resolve(whole[1], results);
      return found === undefined ? value : asParam(found);
    }
    return value.replace(REFERENCE, (text, path: string) => {
      const found = resolve(path, results);
      if (found === undefined) return text;
      return typeof found === "object" ? JSON.stringify(found) : String(found);
    });
  }
  if (Array.isArray(value)) return value.map((v) => substituteValue(v, results));
  if (value !== null && typeof value === "object") {
    const out: Record<string, ParamValue> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteValue(v, results);
    return out;
  }
  return value;
}

export function substituteReferences(params: Params, results: Results): Params {
  return substituteValue(params, results) as Params;
}

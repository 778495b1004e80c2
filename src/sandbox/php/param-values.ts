import type { ParamValue } from "./php-params";

/** How the REST module reads scalar arguments, shared by every method handler. */

/** PHP's intval, which is what the REST module applies to numeric arguments. */
export function intval(value: ParamValue | undefined, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value === "number") return Math.trunc(value);
  if (typeof value === "boolean") return value ? 1 : 0;
  if (typeof value === "string") {
    const n = Number.parseInt(value, 10);
    return Number.isNaN(n) ? 0 : n;
  }
  return Array.isArray(value) ? (value.length ? 1 : 0) : Object.keys(value).length ? 1 : 0;
}

export function text(value: ParamValue | undefined): string {
  if (value === undefined || value === null) return "";
  return typeof value === "object" ? "" : String(value);
}

export function isPlainObject(value: unknown): value is Record<string, ParamValue> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A parameter by name regardless of case (nested objects keep their keys as sent). */
export function param(params: Record<string, ParamValue>, name: string): ParamValue | undefined {
  if (Object.hasOwn(params, name)) return params[name];
  const lower = name.toLowerCase();
  for (const key of Object.keys(params)) if (key.toLowerCase() === lower) return params[key];
  return undefined;
}

import type { CallMode } from "../../core/calls/rest-calls";
import { Bitrix24Error } from "../../core/rest/errors";

/** Property names are a contract (DESIGN.md): flows written by users and by our tests rely on them. */
export interface CallSettings {
  /** Empty = `msg.method`. */
  method: string;
  params: string;
  paramsType: ParamsType;
  mode: CallMode;
  output: "one" | "split";
  /** Empty = `msg.bitrix24.authConnector` when present. */
  authConnector: string;
}

export const PARAMS_TYPES = ["json", "msg", "jsonata", "flow", "global"] as const;
export type ParamsType = (typeof PARAMS_TYPES)[number];

// Bitrix24 method names are dot-separated words (crm.deal.list, user.get, profile); anything else (a space, a
// slash, a URL pasted by mistake) would reach the portal as a path and come back as a confusing 404.
const METHOD_NAME = /^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$/;
const METHOD_MAX = 200;

function configError(description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_CONFIG", description });
}

function invalid(method: string, description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_ARGUMENT", method, description });
}

/**
 * The node's configuration, checked on deploy; absent options (flows saved before they existed) get the
 * defaults DESIGN.md gives them.
 */
export function parseCallConfig(config: Partial<Record<keyof CallSettings, unknown>>): CallSettings {
  const mode = config.mode === undefined || config.mode === "" ? "call" : config.mode;
  if (mode !== "call" && mode !== "each" && mode !== "all") {
    throw configError(`mode must be "call", "each" or "all", got ${JSON.stringify(config.mode)}`);
  }
  const output = config.output === undefined || config.output === "" ? "one" : config.output;
  if (output !== "one" && output !== "split") {
    throw configError(`output must be "one" or "split", got ${JSON.stringify(config.output)}`);
  }
  const paramsType = config.paramsType === undefined || config.paramsType === "" ? "msg" : config.paramsType;
  if (!PARAMS_TYPES.includes(paramsType as ParamsType)) {
    throw configError(`paramsType must be one of ${PARAMS_TYPES.join(", ")}, got ${JSON.stringify(paramsType)}`);
  }
  const params = config.params === undefined ? (paramsType === "msg" ? "payload" : "") : String(config.params);
  const method = String(config.method ?? "").trim();
  if (method) checkMethod(method, mode, "method");
  return {
    method,
    params,
    paramsType: paramsType as ParamsType,
    mode,
    output,
    authConnector: String(config.authConnector ?? "").trim(),
  };
}

/** Throws INVALID_ARGUMENT (msg) or INVALID_CONFIG (config) when the name cannot be a REST method. */
export function checkMethod(method: string, mode: CallMode, source: "method" | "msg.method"): void {
  const fail = (description: string) =>
    source === "method" ? configError(`method: ${description}`) : invalid(method, `msg.method: ${description}`);
  if (method.length > METHOD_MAX || !METHOD_NAME.test(method)) {
    throw fail(`${JSON.stringify(method)} is not a REST method name (like crm.deal.get)`);
  }
  // The node packs each/all into batch requests itself, and a batch cannot contain a batch.
  if (method === "batch" && mode !== "call") {
    throw fail(`batch cannot be called in "${mode}" mode: the node builds the batch requests itself`);
  }
}

/** The method of this msg: the configured one, else `msg.method`. */
export function methodFor(settings: CallSettings, msgMethod: unknown): string {
  if (settings.method) return settings.method;
  if (msgMethod === undefined || msgMethod === null || (typeof msgMethod === "string" && !msgMethod.trim())) {
    throw invalid("", "no method: set one in the node or send msg.method");
  }
  if (typeof msgMethod !== "string") {
    throw invalid("", `msg.method must be a string, got ${typeof msgMethod}`);
  }
  const method = msgMethod.trim();
  checkMethod(method, settings.mode, "msg.method");
  return method;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/**
 * The parameters as the mode needs them: an object for call/all (nothing = no parameters), an array for each.
 * `source` names where they came from, so the error says what to fix.
 */
export function shapeParams(
  value: unknown,
  mode: CallMode,
  method: string,
  source: string,
): Record<string, unknown> | unknown[] {
  if (mode === "each") {
    if (!Array.isArray(value)) {
      throw invalid(
        method,
        `each mode needs an array of parameter objects (or IDs) in ${source}, got ${describe(value)}`,
      );
    }
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      const isId = (typeof item === "number" && Number.isFinite(item)) || (typeof item === "string" && item !== "");
      const isObject = item !== null && typeof item === "object" && !Array.isArray(item);
      if (!isId && !isObject) {
        throw invalid(method, `${source}[${i}] must be a parameter object or an ID, got ${describe(item)}`);
      }
    }
    return value;
  }
  if (value === undefined || value === null || value === "") return {};
  if (typeof value !== "object" || Array.isArray(value) || Buffer.isBuffer(value)) {
    throw invalid(method, `the parameters in ${source} must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** The connector a write carries: the configured one, else the one the get node put in `msg.bitrix24`. */
export function authConnectorFor(settings: CallSettings, meta: unknown): string | undefined {
  if (settings.authConnector) return settings.authConnector;
  const fromMsg = meta && typeof meta === "object" ? (meta as { authConnector?: unknown }).authConnector : undefined;
  return typeof fromMsg === "string" && fromMsg.trim() ? fromMsg.trim() : undefined;
}

/** Where the parameters come from, for error texts: `msg.payload`, `the JSON parameters`, ... */
export function paramsSource(settings: CallSettings): string {
  switch (settings.paramsType) {
    case "msg":
      return `msg.${settings.params}`;
    case "flow":
    case "global":
      return `${settings.paramsType} context ${settings.params}`;
    case "jsonata":
      return "the JSONata expression's result";
    default:
      return "the JSON parameters";
  }
}

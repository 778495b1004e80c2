/**
 * PHP's reading of a query string or form body (`filter[>=ID]=5&id[]=1&id[0]=1&cmd[a]=x`), which is how the
 * portal sees every non-JSON request. Kept inside the sandbox so the emulator shares no parsing code with the
 * client it is meant to check.
 */

export type ParamValue = string | number | boolean | null | ParamValue[] | { [key: string]: ParamValue };
export type Params = { [key: string]: ParamValue };

const FORBIDDEN = new Set(["__proto__", "constructor", "prototype"]);

function decode(text: string): string {
  const spaced = text.replace(/\+/g, " ");
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

type Tree = { [key: string]: Tree | string };

/** `a[b][]` -> ["a", "b", ""], as PHP splits it (text after an unclosed bracket stays in the name). */
function splitName(name: string): string[] {
  const open = name.indexOf("[");
  if (open <= 0) return [name];
  const parts = [name.slice(0, open)];
  let rest = name.slice(open);
  while (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close < 0) break;
    parts.push(rest.slice(1, close));
    rest = rest.slice(close + 1);
  }
  return parts;
}

/** PHP gives `[]` the next integer key: one more than the largest integer key so far. */
function nextIndex(node: Tree): string {
  let next = 0;
  for (const key of Object.keys(node)) {
    if (/^(0|[1-9]\d*)$/.test(key)) next = Math.max(next, Number(key) + 1);
  }
  return String(next);
}

/** PHP arrays with only integer keys are lists to every method handler: hand them over as JS arrays. */
function finish(node: Tree | string): ParamValue {
  if (typeof node === "string") return node;
  const keys = Object.keys(node);
  const out: { [key: string]: ParamValue } = {};
  for (const key of keys) out[key] = finish(node[key]);
  if (keys.length > 0 && keys.every((k) => /^(0|[1-9]\d*)$/.test(k))) {
    return keys.sort((a, b) => Number(a) - Number(b)).map((k) => out[k]);
  }
  return out;
}

export function parsePhpQuery(text: string): Params {
  const root: Tree = {};
  if (!text) return {};
  for (const pair of text.split("&")) {
    if (!pair) continue;
    const eq = pair.indexOf("=");
    const name = decode(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? "" : decode(pair.slice(eq + 1));
    const parts = splitName(name);
    if (parts.some((p) => FORBIDDEN.has(p)) || parts[0] === "") continue;
    let node = root;
    for (let i = 0; i < parts.length; i++) {
      const key = parts[i] === "" ? nextIndex(node) : parts[i];
      if (i === parts.length - 1) {
        node[key] = value;
      } else {
        const existing = node[key];
        if (existing === undefined || typeof existing === "string") node[key] = {};
        node = node[key] as Tree;
      }
    }
  }
  const out = finish(root);
  return Array.isArray(out) || typeof out !== "object" || out === null ? {} : (out as Params);
}

/** The inverse, for building ONOFFLINEEVENT notifications the way a PHP portal posts them. */
export function encodePhpQuery(value: { [key: string]: unknown }, prefix = ""): string {
  const parts: string[] = [];
  for (const [key, item] of Object.entries(value)) {
    const name = prefix ? `${prefix}[${key}]` : key;
    if (item === undefined || item === null) continue;
    if (typeof item === "object") {
      const nested = encodePhpQuery(item as { [key: string]: unknown }, name);
      if (nested) parts.push(nested);
    } else {
      parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(item))}`);
    }
  }
  return parts.join("&");
}

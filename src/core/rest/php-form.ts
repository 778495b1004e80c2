/**
 * Parser for PHP-style form bodies (`auth[application_token]=x&data[0]=y&list[]=z`), the way Bitrix24 posts
 * event notifications. Written here rather than pulled from `qs`/`body-parser` so the package keeps no
 * runtime dependency on what Node-RED happens to ship.
 */

export type FormValue = string | FormValue[] | { [key: string]: FormValue };

export interface FormParseLimits {
  /** Most `key=value` pairs read; the rest are ignored (qs' parameterLimit). */
  maxPairs?: number;
  /** Deepest bracket nesting kept; deeper brackets stay part of the last key (qs' depth). */
  maxDepth?: number;
}

// Keys that would reach Object.prototype through plain-object assignment.
const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

function decode(text: string): string {
  const spaced = text.replace(/\+/g, " ");
  try {
    return decodeURIComponent(spaced);
  } catch {
    // A stray `%` is not worth refusing a notification for: keep the text as sent.
    return spaced;
  }
}

/** `a[b][]` -> ["a", "b", ""]; whatever lies past maxDepth becomes one last segment, brackets and all (as qs does). */
function splitKey(key: string, maxDepth: number): string[] {
  const open = key.indexOf("[");
  if (open <= 0) return [key];
  const segments = [key.slice(0, open)];
  let rest = key.slice(open);
  while (rest.startsWith("[") && segments.length <= maxDepth) {
    const close = rest.indexOf("]");
    if (close < 0) break;
    segments.push(rest.slice(1, close));
    rest = rest.slice(close + 1);
  }
  if (rest) segments.push(rest);
  return segments;
}

type Container = FormValue[] | { [key: string]: FormValue };

function assign(target: Container, segment: string, value: FormValue): void {
  if (Array.isArray(target)) {
    if (segment === "") target.push(value);
    else (target as unknown as Record<string, FormValue>)[segment] = value;
  } else {
    target[segment === "" ? String(Object.keys(target).length) : segment] = value;
  }
}

function child(target: Container, segment: string, nextSegment: string): Container {
  const existing = Array.isArray(target)
    ? segment === ""
      ? undefined
      : (target as unknown as Record<string, FormValue>)[segment]
    : target[segment];
  if (existing !== undefined && typeof existing === "object") return existing;
  const created: Container = nextSegment === "" ? [] : {};
  assign(target, segment, created);
  return created;
}

/** Turns objects whose keys are exactly 0..n-1 into arrays, as PHP's `data[0]=..&data[1]=..` means a list. */
function normalise(value: FormValue): FormValue {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.map(normalise);
  const keys = Object.keys(value);
  const out: { [key: string]: FormValue } = {};
  for (const key of keys) out[key] = normalise(value[key]);
  if (keys.length > 0 && keys.every((k, i) => k === String(i))) return keys.map((k) => out[k]);
  return out;
}

export function parsePhpForm(body: string, limits: FormParseLimits = {}): { [key: string]: FormValue } {
  const maxPairs = limits.maxPairs ?? 1000;
  const maxDepth = limits.maxDepth ?? 5;
  const root: { [key: string]: FormValue } = {};
  const pairs = body.split("&");
  for (let i = 0; i < pairs.length && i < maxPairs; i++) {
    const pair = pairs[i];
    if (!pair) continue;
    const eq = pair.indexOf("=");
    const key = decode(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? "" : decode(pair.slice(eq + 1));
    if (!key) continue;
    const segments = splitKey(key, maxDepth);
    if (segments.some((s) => FORBIDDEN_KEYS.has(s))) continue;
    let target: Container = root;
    for (let s = 0; s < segments.length - 1; s++) target = child(target, segments[s], segments[s + 1]);
    // A scalar already at this place loses to the later pair, as in PHP.
    assign(target, segments[segments.length - 1], value);
  }
  const out: { [key: string]: FormValue } = {};
  for (const key of Object.keys(root)) out[key] = normalise(root[key]);
  return out;
}

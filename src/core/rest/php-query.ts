/**
 * Encodes parameters the way PHP's http_build_query does, because inside a batch each command travels as
 * `<method>?<query>` and the portal parses that query with PHP: nested objects and arrays become bracketed
 * keys (`filter[>=ID]=5&id[0]=1&id[1]=2`). Key segments and values are percent-encoded; the brackets stay
 * literal, which PHP and every PHP-style parser read the same as encoded ones.
 * Like http_build_query: null/undefined are left out, booleans become 1/0, empty arrays/objects vanish.
 */
export function phpQueryString(params: Record<string, unknown>): string {
  const pairs: string[] = [];
  for (const [key, value] of Object.entries(params)) appendPairs(pairs, encodeURIComponent(key), value);
  return pairs.join("&");
}

function appendPairs(pairs: string[], key: string, value: unknown): void {
  if (value === undefined || value === null) return;
  if (Array.isArray(value)) {
    value.forEach((item, index) => {
      appendPairs(pairs, `${key}[${index}]`, item);
    });
    return;
  }
  if (value instanceof Date) {
    pairs.push(`${key}=${encodeURIComponent(value.toISOString())}`);
    return;
  }
  if (typeof value === "object") {
    for (const [inner, item] of Object.entries(value as Record<string, unknown>)) {
      appendPairs(pairs, `${key}[${encodeURIComponent(inner)}]`, item);
    }
    return;
  }
  const scalar = typeof value === "boolean" ? (value ? "1" : "0") : String(value);
  pairs.push(`${key}=${encodeURIComponent(scalar)}`);
}

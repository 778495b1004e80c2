/** A JSON object: not null, not an array. What an answer or a caller's parameters must be before their keys are read. */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

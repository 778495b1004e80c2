import type { Sandbox } from "../../src/sandbox";

/** A bare REST caller for the sandbox tests: real HTTP through fetch, no client code of ours involved. */

export interface Answer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever JSON the portal answered
  body: any;
}

export async function rest(
  sandbox: Sandbox,
  method: string,
  params: Record<string, unknown> = {},
  options: { auth?: string | null; suffix?: string } = {},
): Promise<Answer> {
  const auth = options.auth === undefined ? sandbox.credentials.accessToken : options.auth;
  const body = auth === null ? params : { ...params, auth };
  const res = await fetch(`${sandbox.url}/rest/${method}${options.suffix ?? ".json"}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** A PHP-style form post, the way PHP SDKs and curl -d send it. */
export async function restForm(sandbox: Sandbox, method: string, form: string): Promise<Answer> {
  const res = await fetch(`${sandbox.url}/rest/${method}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: `${form}&auth=${encodeURIComponent(sandbox.credentials.accessToken)}`,
  });
  return { status: res.status, body: await res.json() };
}

export async function webhookCall(sandbox: Sandbox, method: string, params: Record<string, unknown> = {}) {
  const res = await fetch(`${sandbox.credentials.webhookUrl}${method}.json`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(params),
  });
  return { status: res.status, body: await res.json() };
}

import { type Sandbox, type SandboxOptions, startSandbox } from "../../src/sandbox";

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

/** One sandbox for a suite, reset before each test; the getter is valid inside tests and hooks. */
export function sandboxPerSuite(options: SandboxOptions = { rateLimit: false }): () => Sandbox {
  let sandbox: Sandbox | undefined;
  before(async () => {
    sandbox = await startSandbox(options);
  });
  after(async () => {
    await sandbox?.close();
  });
  beforeEach(() => sandbox?.reset());
  return () => {
    if (!sandbox) throw new Error("the sandbox is not started yet");
    return sandbox;
  };
}

/**
 * sandboxPerSuite as a Sandbox to write `sandbox.x` with: each use reaches the suite's sandbox of the moment
 * (started in `before`), so a suite declares it in one line; `prepare` runs after the reset before each test.
 */
export function sharedSandbox(prepare?: (sandbox: Sandbox) => void, options?: SandboxOptions): Sandbox {
  const started = sandboxPerSuite(options);
  if (prepare) beforeEach(() => prepare(started()));
  return new Proxy({} as Sandbox, {
    get(_target, property) {
      const sandbox = started();
      const value: unknown = Reflect.get(sandbox, property, sandbox);
      return typeof value === "function" ? value.bind(sandbox) : value;
    },
  });
}

/** A fresh sandbox for each test (without its rate limit unless told), closed after it. */
export function sandboxPerTest(take: (sandbox: Sandbox) => void, options: SandboxOptions = { rateLimit: false }): void {
  let sandbox: Sandbox | undefined;
  beforeEach(async () => {
    sandbox = await startSandbox(options);
    take(sandbox);
  });
  afterEach(async () => {
    await sandbox?.close();
    sandbox = undefined;
  });
}

/** event.bind with event_type=offline for each event name, under one connector. */
export async function bindOffline(sandbox: Sandbox, events: string[], connector = ""): Promise<void> {
  for (const event of events) {
    const res = await rest(sandbox, "event.bind", { event, event_type: "offline", auth_connector: connector });
    if (res.body.result !== true) throw new Error(`event.bind ${event}: ${JSON.stringify(res.body)}`);
  }
}

/** The control API over HTTP (GET without a body, POST with one). */
export async function control(url: string, action: string, body?: unknown): Promise<Answer> {
  const res = await fetch(`${url}/_sandbox/${action}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

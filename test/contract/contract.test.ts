import { readdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import should from "should";
import { parseInstallation, verifyInstallation } from "../../src/core/auth/installation";
import { parseTokenAnswer } from "../../src/core/auth/oauth-session";
import { Bitrix24Client } from "../../src/core/client/client";
import { verifyNotification } from "../../src/core/queue/notification";
import { Bitrix24Error } from "../../src/core/rest/errors";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { parsePhpQuery } from "../../src/sandbox/php/php-params";
import { rest } from "../sandbox/rest-call";

/**
 * Contract tests: answers and bodies as Bitrix24 prints or sends them (fixtures/*.json, each naming its source).
 * 1. our client parses each as what it is (an answer, an error with its code, a token pair, an installation, a push);
 * 2. the sandbox's own answers have the same shape, field by field (names, JSON types, the rules a field follows),
 *    so it cannot drift from the real shape again without a test saying so.
 */

interface Fixture {
  source: string;
  kind: "token" | "token-error" | "install" | "push" | "error" | "batch" | "answer";
  method?: string;
  status?: number;
  query?: Record<string, string>;
  body: Record<string, unknown>;
  commands?: string[];
  expect?: { code?: string; status?: number; description?: string; errors?: Record<string, string> };
}

const DIR = join(__dirname, "fixtures");
const fixtures = new Map<string, Fixture>(
  readdirSync(DIR)
    .filter((f) => f.endsWith(".json"))
    .map((f) => [f.replace(/\.json$/, ""), JSON.parse(readFileSync(join(DIR, f), "utf8")) as Fixture]),
);

function fixture(name: string): Fixture {
  const f = fixtures.get(name);
  if (!f) throw new Error(`no fixture ${name}`);
  return f;
}

type Shape = string | Shape[] | { [key: string]: Shape };

/** The JSON type of every field, recursively (an array by its first element). */
function shapeOf(value: unknown): Shape {
  if (value === null) return "null";
  if (Array.isArray(value)) return value.length === 0 ? [] : [shapeOf(value[0])];
  if (typeof value === "object") {
    const out: { [key: string]: Shape } = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = shapeOf(v);
    return out;
  }
  return typeof value;
}

/**
 * Every field of the recorded shape is in the sandbox's with the same JSON type; `extra` names fields the sandbox
 * may add (each documented in the sandbox README). A numeric string where the record has a number (or the
 * reverse) is a difference: PHP's json_encode keeps that distinction and clients trip on it.
 */
function sameShape(actual: Shape, expected: Shape, path: string, extra: readonly string[] = []): string[] {
  const diffs: string[] = [];
  if (typeof expected === "string" || typeof actual === "string") {
    if (JSON.stringify(actual) !== JSON.stringify(expected) && !(Array.isArray(expected) && expected.length === 0)) {
      diffs.push(`${path}: ${JSON.stringify(actual)} where the record has ${JSON.stringify(expected)}`);
    }
    return diffs;
  }
  if (Array.isArray(expected) || Array.isArray(actual)) {
    if (!Array.isArray(expected) || !Array.isArray(actual)) return [`${path}: array vs object`];
    if (expected.length > 0 && actual.length > 0) diffs.push(...sameShape(actual[0], expected[0], `${path}[0]`, extra));
    return diffs;
  }
  for (const key of Object.keys(expected)) {
    if (!(key in actual)) diffs.push(`${path}.${key}: missing`);
    else diffs.push(...sameShape(actual[key], expected[key], `${path}.${key}`, extra));
  }
  for (const key of Object.keys(actual)) {
    if (!(key in expected) && !extra.includes(key)) diffs.push(`${path}.${key}: not in the record`);
  }
  return diffs;
}

/** A stand-in endpoint that answers one fixture body, as the portal or OAuth server would. */
async function answering(status: () => number, body: () => unknown): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.writeHead(status(), { "content-type": "application/json" });
    res.end(JSON.stringify(body()));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe("contract: recorded answers", () => {
  it("every fixture names its source", () => {
    should(fixtures.size).be.aboveOrEqual(15);
    for (const [name, f] of fixtures) should(typeof f.source === "string" && f.source.length > 20).be.true(name);
  });

  describe("our client parses each", () => {
    let stand: { url: string; server: Server };
    let current: Fixture;
    let client: Bitrix24Client;
    before(async () => {
      stand = await answering(
        () => current.status ?? 200,
        () => current.body,
      );
      client = new Bitrix24Client({
        portalUrl: stand.url,
        auth: { type: "webhook", webhookUrl: `${stand.url}/rest/1/secret/` },
        rateLimit: false,
        retry: { maxAttempts: 1 },
      });
    });
    after(async () => {
      await client.close();
      stand.server.close();
    });

    for (const name of ["offline-get", "offline-error", "offline-list", "list-page-next", "list-start-minus-1"]) {
      it(`${name}: an answer, with its total and next as given`, async () => {
        current = fixture(name);
        const got = await client.call(current.method ?? "", {});
        should(got.result).eql(current.body.result);
        should(got.total).equal(current.body.total);
        should(got.next).equal(current.body.next);
      });
    }

    for (const name of ["error-empty-code", "error-with-code"]) {
      it(`${name}: an error with its description and a code that says what happened`, async () => {
        current = fixture(name);
        const err = await client.call(current.method ?? "", {}).then(
          () => undefined,
          (e: unknown) => e,
        );
        should(err).be.instanceOf(Bitrix24Error);
        should(err).match(current.expect ?? {});
        should((err as Bitrix24Error).code).not.equal("MALFORMED_ANSWER");
      });
    }

    for (const name of ["batch-with-failures", "batch-empty-code"]) {
      it(`${name}: each failed command is an error with its code, the rest are results`, async () => {
        current = fixture(name);
        const commands = Object.fromEntries((current.commands ?? []).map((k) => [k, { method: "crm.company.get" }]));
        const outcome = await client.batch(commands);
        const codes = Object.fromEntries(Object.entries(outcome.errors).map(([k, e]) => [k, e.code]));
        should(codes).eql(current.expect?.errors ?? {});
        const results = current.body.result as { result: Record<string, unknown> | unknown[] };
        should(outcome.result).eql(Array.isArray(results.result) ? {} : results.result);
      });
    }

    it("token answers of both OAuth servers give a token pair and their server_endpoint", () => {
      for (const name of ["oauth-token-bitrix-info", "oauth-token-bitrix24-tech"]) {
        const f = fixture(name);
        const tokens = parseTokenAnswer(200, JSON.stringify(f.body));
        should(tokens).match({ accessToken: f.body.access_token, refreshToken: f.body.refresh_token });
        should(tokens.serverEndpoint).equal(f.body.server_endpoint);
      }
      const refusal = fixture("oauth-error-payment");
      should(() => parseTokenAnswer(refusal.status ?? 400, JSON.stringify(refusal.body))).throw({
        code: "PAYMENT_REQUIRED",
      });
    });

    it("both installation shapes are read, with the portal as their domain", () => {
      const auth = fixture("install-auth");
      should(parseInstallation(auth.body)).match({ shape: "auth", domain: "some-domain.bitrix24.com" });
      const placement = fixture("install-placement");
      should(parseInstallation({ ...placement.query, ...placement.body })).match({
        shape: "placement",
        domain: "xxx.bitrix24.com",
        applicationToken: "ec1b2074a9d3f5c81b6e40d27a95cf38",
        serverEndpoint: "https://oauth.bitrix24.tech/rest/",
      });
    });

    it("an installation verified by a real-shaped token answer (domain: oauth.bitrix.info) is accepted", async () => {
      const install = parseInstallation(fixture("install-auth").body);
      const token = fixture("oauth-token-bitrix-info");
      const oauth = await answering(
        () => 200,
        () => ({ ...token.body, client_endpoint: install.clientEndpoint, member_id: install.memberId }),
      );
      try {
        const verified = await verifyInstallation(
          { ...install, serverEndpoint: "" },
          { clientId: "local.1", clientSecret: "s", oauthServer: oauth.url },
        );
        should(verified.portalUrl).equal("https://some-domain.bitrix24.com");
      } finally {
        oauth.server.close();
      }
    });

    it("ONOFFLINEEVENT as recorded is trusted with its application_token, and only with it", () => {
      const push = fixture("onofflineevent").body;
      const auth = push.auth as Record<string, string>;
      should(verifyNotification(push, auth.application_token)).match({ event: "ONOFFLINEEVENT" });
      should(() => verifyNotification(push, "f".repeat(32))).throw({ status: 401 });
    });
  });

  describe("the sandbox answers in the same shape", () => {
    let sandbox: Sandbox;
    let capture: Server;
    let captureUrl: string;
    let received: { url: string; body: string }[] = [];
    before(async () => {
      sandbox = await startSandbox({ rateLimit: false });
      capture = createServer((req: IncomingMessage, res) => {
        let body = "";
        req.setEncoding("utf8");
        req.on("data", (chunk: string) => {
          body += chunk;
        });
        req.on("end", () => {
          received.push({ url: req.url ?? "", body });
          res.end("OK");
        });
      });
      await new Promise<void>((r) => capture.listen(0, "127.0.0.1", r));
      captureUrl = `http://127.0.0.1:${(capture.address() as AddressInfo).port}`;
    });
    after(async () => {
      await sandbox.close();
      capture.close();
    });
    beforeEach(() => {
      received = [];
    });

    function check(actual: unknown, name: string, extra: readonly string[] = [], pick?: (b: unknown) => unknown) {
      const body = fixture(name).body;
      should(sameShape(shapeOf(actual), shapeOf(pick ? pick(body) : body), name, extra)).eql([]);
    }

    it("token answer: the fields of oauth.bitrix.info's, domain = the OAuth server's host, not the portal's", async () => {
      const c = sandbox.credentials;
      const query = new URLSearchParams({
        grant_type: "refresh_token",
        client_id: c.clientId,
        client_secret: c.clientSecret,
        refresh_token: c.refreshToken,
      });
      const answer = (await (await fetch(`${sandbox.oauthUrl}/oauth/token/?${query}`)).json()) as Record<
        string,
        unknown
      >;
      // expires and user_id: recorded answers of the SDKs carry them too; the docs' example leaves them out.
      check(answer, "oauth-token-bitrix-info", ["expires", "user_id"]);
      should(answer.domain).equal(new URL(sandbox.oauthUrl).host);
      should(answer.domain).not.equal(new URL(sandbox.url).host);
      should(new URL(String(answer.client_endpoint)).host).equal(new URL(sandbox.url).host);
    });

    it("installation POST (auth shape): the fields of on-app-install.md, domain = the portal", async () => {
      await sandbox.install(`${captureUrl}/install`, "auth");
      const body = parsePhpQuery(received[0].body) as Record<string, unknown>;
      check(body, "install-auth", ["expires", "user_id"]);
      const auth = body.auth as Record<string, string>;
      should(auth.domain).equal(new URL(sandbox.url).host);
      should(auth.scope).equal("crm,task,user");
    });

    it("installation POST (placement shape): the fields of the placement pages", async () => {
      await sandbox.install(`${captureUrl}/install`, "placement");
      const url = new URL(received[0].url, captureUrl);
      check(Object.fromEntries(url.searchParams), "install-placement", [], () => fixture("install-placement").query);
      check(parsePhpQuery(received[0].body), "install-placement");
    });

    it("ONOFFLINEEVENT push: the recorded fields (event_handler_id, scope list, portal domain); data left out", async () => {
      const bound = await rest(sandbox, "event.bind", { event: "ONOFFLINEEVENT", handler: `${captureUrl}/push` });
      should(bound.status).equal(200);
      sandbox.addEvents(1);
      for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      const body = parsePhpQuery(received[0].body) as Record<string, unknown>;
      // `data`: the docs show {type, event, handler, minTimeout}, the vendor says it is empty in practice.
      check({ ...body, data: fixture("onofflineevent").body.data }, "onofflineevent", ["expires", "user_id"]);
      should(body.event_handler_id).match(/^\d+$/);
      should((body.auth as Record<string, string>).domain).equal(new URL(sandbox.url).host);
      await rest(sandbox, "event.unbind", { event: "ONOFFLINEEVENT", handler: `${captureUrl}/push` });
    });

    it("event.offline.get / .error / .list: the seeds' and docs' fields, EVENT_DATA false as recorded", async () => {
      sandbox.reset();
      sandbox.addEvents(1, { name: "ONCRMLEADADD", data: () => false });
      sandbox.addEvents(1, { name: "ONCRMCOMPANYADD", data: () => false, userId: "0" });
      const listed = await rest(sandbox, "event.offline.list", {});
      // EVENT_ADDITIONAL is {"user_id": ...} here: the recorded example says false; both occur (README).
      const falseAdditional = (b: unknown) => b;
      check(
        { ...listed.body, result: listed.body.result.map(withFalseAdditional) },
        "offline-list",
        ["operating_reset_at"],
        falseAdditional,
      );
      const got = await rest(sandbox, "event.offline.get", { clear: 1, limit: 1 });
      check(
        { ...got.body, result: { ...got.body.result, events: got.body.result.events.map(withFalseAdditional) } },
        "offline-get",
        ["operating_reset_at"],
      );
      // clear=1 answers process_id null, as recorded.
      should(got.body.result.process_id).be.null();
      const held = await rest(sandbox, "event.offline.get", { clear: 0 });
      const marked = await rest(sandbox, "event.offline.error", {
        process_id: held.body.result.process_id,
        message_id: [held.body.result.events[0].MESSAGE_ID],
      });
      check(marked.body, "offline-error", ["operating_reset_at"]);
    });

    it("an empty-code error: crm.company.get of a missing id answers exactly as recorded, alone and in a batch", async () => {
      const added = await rest(sandbox, "crm.company.add", { fields: { TITLE: "a company" } });
      const alone = await rest(sandbox, "crm.company.get", { id: 999999 });
      should([alone.status, alone.body]).eql([400, fixture("error-empty-code").body]);
      const batch = await rest(sandbox, "batch", {
        halt: 0,
        cmd: { ok: `crm.company.get?id=${added.body.result}`, gone: "crm.company.get?id=999999" },
      });
      const recorded = fixture("batch-empty-code").body;
      should(batch.body.result.result_error).eql((recorded.result as Record<string, unknown>).result_error);
      should(Object.keys(batch.body.result.result_time)).eql(["ok"]);
      // The command's own result is a whole company (its fields are crm.company.get's, checked elsewhere).
      const withoutResult = { ...batch.body, result: { ...batch.body.result, result: {} } };
      check(withoutResult, "batch-empty-code", ["operating", "operating_reset_at"], (b) => ({
        ...(b as Record<string, unknown>),
        result: { ...(recorded.result as Record<string, unknown>), result: {} },
      }));
    });

    it("a batch whose commands all failed: result and result_time are [] as recorded", async () => {
      sandbox.setOptions({ scopes: ["task"] });
      try {
        const batch = await rest(sandbox, "batch", {
          halt: 0,
          cmd: { get_user: "user.get?ID=1", get_department: "user.get?ID=2" },
        });
        should(batch.body.result.result_time).eql([]);
        should(batch.body.result.result).eql([]);
        check(batch.body, "batch-with-failures", ["operating", "operating_reset_at"]);
      } finally {
        sandbox.setOptions({ scopes: null });
      }
    });

    it("list pages: counted with next and total; start=-1 with total 0 and no next", async () => {
      sandbox.crm.seed("lead", 120);
      const page = await rest(sandbox, "crm.lead.list", { select: ["ID"] });
      check(page.body, "list-page-next", ["operating", "operating_reset_at"]);
      should(page.body.next).equal(50);
      const fast = await rest(sandbox, "crm.lead.list", { select: ["ID"], start: -1 });
      check(fast.body, "list-start-minus-1", ["operating", "operating_reset_at"]);
      should(fast.body).not.have.property("next");
    });
  });
});

/** The sandbox's records carry EVENT_ADDITIONAL {user_id}; the recorded example shows false (both occur). */
function withFalseAdditional(record: Record<string, unknown>): Record<string, unknown> {
  return { ...record, EVENT_ADDITIONAL: false };
}

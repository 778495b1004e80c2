import should from "should";
import { Bitrix24Client, type RequestInfo } from "../../src/core/client/client";
import { type Bitrix24Error, SYSTEM_ERRORS } from "../../src/core/rest/errors";
import { fakePortalPerTest, webhookClientsPerTest } from "../kit/clients";
import { type FakePortal, type Handler, sendError, sendJson, sendResult } from "../kit/fake-portal";
import { rejection } from "../kit/rejection";

/** The seeds' "Statuses and System Error Codes" table, and whether a retry may help. */
const SEED_ERRORS: Array<[number, string, boolean]> = [
  [500, "INTERNAL_SERVER_ERROR", true],
  [500, "ERROR_UNEXPECTED_ANSWER", true],
  [503, "QUERY_LIMIT_EXCEEDED", true],
  [405, "ERROR_BATCH_METHOD_NOT_ALLOWED", false],
  [400, "ERROR_BATCH_LENGTH_EXCEEDED", false],
  [401, "NO_AUTH_FOUND", false],
  [400, "INVALID_REQUEST", false],
  // A block by the vendor's support: a retry only adds load (REFERENCE.md "Real portals").
  [503, "OVERLOAD_LIMIT", false],
  [403, "ACCESS_DENIED", false],
  [403, "INVALID_CREDENTIALS", false],
  [404, "ERROR_MANIFEST_IS_NOT_AVAILABLE", false],
  [403, "insufficient_scope", false],
  [401, "expired_token", false],
  [403, "user_access_error", false],
  [500, "PORTAL_DELETED", false],
];

describe("core/client error mapping and retries", () => {
  let portal: FakePortal;
  const webhookClient = webhookClientsPerTest(() => portal.url);
  fakePortalPerTest((p) => {
    portal = p;
  });

  it("calls <webhook><method>.json with the parameters as JSON and returns result/total/next/time", async () => {
    portal.handler = (_req, res) => sendResult(res, [1, 2], { total: 120, next: 50 });
    const answer = await webhookClient().call<number[]>("crm.lead.list", { filter: { ">ID": 1 } });
    should(answer.result).eql([1, 2]);
    should(answer.total).equal(120);
    should(answer.next).equal(50);
    should(answer.time?.operating).equal(0);
    const [req] = portal.requests;
    should(req.path).equal("/rest/1/secret/crm.lead.list.json");
    should(req.headers["content-type"]).match(/application\/json/);
    should(req.body).eql({ filter: { ">ID": 1 } });
  });

  for (const [status, code, retryable] of SEED_ERRORS) {
    it(`maps ${status} ${code} (retryable: ${retryable})`, async () => {
      portal.handler = (_req, res) => sendError(res, status, code, `described ${code}`);
      const err = await rejection(webhookClient().call("event.offline.list"));
      should(err.code).equal(code);
      should(err.status).equal(status);
      should(err.retryable).equal(retryable);
      should(err.method).equal("event.offline.list");
      should(err.description).endWith(`described ${code}`);
      should(SYSTEM_ERRORS[code]?.status).equal(status);
      should(portal.requests).have.length(retryable ? 2 : 1);
    });
  }

  it("passes method-specific codes through with the HTTP status", async () => {
    portal.handler = (_req, res) => sendError(res, 400, "ERROR_ARGUMENT", "LIMIT must be positive");
    const err = await rejection(webhookClient().call("event.offline.get", { clear: 0, limit: 0 }));
    should(err).match({ code: "ERROR_ARGUMENT", status: 400, retryable: false, description: "LIMIT must be positive" });
  });

  it("503 QUERY_LIMIT_EXCEEDED -> backoff -> success; the shared bucket is treated as full", async () => {
    let refusals = 2;
    portal.handler = (_req, res) => {
      if (refusals-- > 0) sendError(res, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests");
      else sendResult(res, "ok");
    };
    const c = webhookClient({
      rateLimit: { perSecond: 20, burst: 10 },
      retry: { maxAttempts: 4, baseDelayMs: 1, maxDelayMs: 2 },
    });
    const waits: number[] = [];
    c.on("rate-limited", (ms: number) => waits.push(ms));
    const answer = await c.call<string>("event.offline.list");
    should(answer.result).equal("ok");
    should(portal.requests).have.length(3);
    // penalize(): the next request waits for one drain step (1/20 s), not just the 1-2 ms backoff.
    should(portal.requests[1].at - portal.requests[0].at).be.aboveOrEqual(40);
    should(waits.length).be.aboveOrEqual(2);
  });

  it("429 is retried and Retry-After is honoured up to maxDelayMs", async () => {
    let refusals = 1;
    portal.handler = (_req, res) => {
      if (refusals-- > 0) {
        sendJson(
          res,
          429,
          { error: "TOO_MANY_REQUESTS", error_description: "a proxy in front of the portal" },
          { "Retry-After": "1" },
        );
      } else sendResult(res, true);
    };
    const c = webhookClient({ retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 80 } });
    const retries: Array<{ delayMs: number; error: Bitrix24Error }> = [];
    c.on("retry", (r: { delayMs: number; error: Bitrix24Error }) => retries.push(r));
    await c.call("event.offline.list");
    should(retries).have.length(1);
    should(retries[0].delayMs).equal(80);
    should(retries[0].error.status).equal(429);
  });

  it("answers that are not REST JSON are MALFORMED_ANSWER; a proxy's 502 page is retried, a 200 is not", async () => {
    portal.handler = (_req, res) => {
      res.writeHead(200, { "Content-Type": "text/html" });
      res.end("<html>maintenance</html>");
    };
    let err = await rejection(webhookClient().call("event.get"));
    should(err).match({ code: "MALFORMED_ANSWER", status: 200, retryable: false });
    should(err.description).match(/maintenance/);
    should(portal.requests).have.length(1);

    portal.handler = (_req, res) => {
      res.writeHead(502, { "Content-Type": "text/html" });
      res.end("<html>Bad gateway</html>");
    };
    err = await rejection(webhookClient().call("event.get"));
    should(err).match({ code: "MALFORMED_ANSWER", status: 502, retryable: true });
    should(portal.requests).have.length(3);

    portal.handler = (_req, res) => sendJson(res, 200, { time: {} });
    err = await rejection(webhookClient().call("event.get"));
    should(err.code).equal("MALFORMED_ANSWER");
  });

  it("a portal that does not answer in time is TIMEOUT (retried), an absent one NETWORK_ERROR", async () => {
    const hang: Handler = () => undefined;
    portal.handler = hang;
    const err = await rejection(webhookClient({ timeoutMs: 80 }).call("event.get"));
    should(err).match({ code: "TIMEOUT", status: 0, retryable: true });
    should(portal.requests).have.length(2);

    const absent = webhookClient({
      portalUrl: "http://127.0.0.1:1",
      auth: { type: "webhook", webhookUrl: "http://127.0.0.1:1/rest/1/x/" },
      retry: { maxAttempts: 1 },
    });
    const down = await rejection(absent.call("event.get"));
    should(down).match({ code: "NETWORK_ERROR", status: 0, retryable: true });
  });

  it('emits "request" with method, status and duration after each HTTP request', async () => {
    let first = true;
    portal.handler = (_req, res) => {
      if (first) {
        first = false;
        sendError(res, 500, "INTERNAL_SERVER_ERROR");
      } else sendResult(res, true);
    };
    const c = webhookClient();
    const seen: RequestInfo[] = [];
    c.on("request", (info: RequestInfo) => seen.push(info));
    await c.call("event.get");
    should(seen.map((s) => [s.method, s.status])).eql([
      ["event.get", 500],
      ["event.get", 200],
    ]);
    should(seen[0].ms).be.aboveOrEqual(0);
  });

  it("refuses bad URLs and method names before any HTTP", async () => {
    should(
      () =>
        new Bitrix24Client({
          portalUrl: "http://example.bitrix24.com",
          auth: { type: "webhook", webhookUrl: "https://example.bitrix24.com/rest/1/x/" },
        }),
    ).throw(/https/);
    should(() => webhookClient({ auth: { type: "webhook", webhookUrl: `${portal.url}/hook/` } })).throw(
      /rest\/<user id>/,
    );
    const err = await rejection(webhookClient().call("../../etc/passwd"));
    should(err.code).equal("INVALID_ARGUMENT");
    should(portal.requests).be.empty();
  });
});

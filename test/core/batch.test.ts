import should from "should";
import { Bitrix24Error } from "../../src/core/rest/errors";
import { phpQueryString } from "../../src/core/rest/php-query";
import type { BatchCommand } from "../../src/core/rest/types";
import { fakePortalPerTest, webhookClientsPerTest } from "../kit/clients";
import { type FakePortal, type SeenRequest, sendError, sendResult } from "../kit/fake-portal";

const MID = "0123456789abcdef0123456789abcdef";

/** Parses `method?query` as PHP would, for the assertions (keys decoded, brackets kept). */
function parseCommand(cmd: string): { method: string; pairs: Array<[string, string]> } {
  const [method, query = ""] = cmd.split("?");
  const pairs =
    query === "" ? [] : query.split("&").map((p) => p.split("=").map(decodeURIComponent) as [string, string]);
  return { method, pairs };
}

describe("core/client batch", () => {
  let portal: FakePortal;
  const client = webhookClientsPerTest(() => portal.url);
  fakePortalPerTest((p) => {
    portal = p;
  });

  it("encodes parameters as a PHP query string", () => {
    should(phpQueryString({ filter: { ">=ID": 5, "=EVENT_NAME": "ON X" }, id: [1, 2], clear: 0, flag: true })).equal(
      "filter[%3E%3DID]=5&filter[%3DEVENT_NAME]=ON%20X&id[0]=1&id[1]=2&clear=0&flag=1",
    );
    should(phpQueryString({ a: undefined, b: null, c: [], d: "x&y=z" })).equal("d=x%26y%3Dz");
  });

  it("sends halt and cmd[key] = method?query in one request and decodes results, errors, totals", async () => {
    portal.handler = (_req, res) =>
      sendResult(res, {
        result: { get: { process_id: "p1", events: [] }, list: [{ ID: "1" }] },
        result_error: { bad: { error: "ERROR_ARGUMENT", error_description: "LIMIT must be positive" } },
        result_total: { list: 75 },
        result_next: { list: 50 },
        result_time: {},
      });
    const outcome = await client().batch(
      {
        get: { method: "event.offline.get", params: { clear: 0, limit: 50, filter: { ">=ID": 5 } } },
        list: { method: "event.offline.list" },
        bad: { method: "event.offline.get", params: { clear: 0, limit: 0 } },
      },
      { halt: false },
    );
    should(portal.requests).have.length(1);
    const req: SeenRequest = portal.requests[0];
    should(req.path).equal("/rest/1/secret/batch.json");
    should(req.body.halt).equal(0);
    const cmd = req.body.cmd as Record<string, string>;
    should(Object.keys(cmd)).eql(["get", "list", "bad"]);
    should(parseCommand(cmd.get)).eql({
      method: "event.offline.get",
      pairs: [
        ["clear", "0"],
        ["limit", "50"],
        ["filter[>=ID]", "5"],
      ],
    });
    should(cmd.list).equal("event.offline.list");

    should(outcome.requests).equal(1);
    should(outcome.result).eql({ get: { process_id: "p1", events: [] }, list: [{ ID: "1" }] });
    should(outcome.total).eql({ list: 75 });
    should(outcome.next).eql({ list: 50 });
    should(outcome.time?.duration).be.a.Number();
    should(outcome.errors.bad).be.instanceOf(Bitrix24Error);
    should(outcome.errors.bad).match({ code: "ERROR_ARGUMENT", method: "event.offline.get", retryable: false });
  });

  it("sends halt=1 when asked and reads PHP's empty arrays as empty maps", async () => {
    portal.handler = (_req, res) =>
      sendResult(res, { result: [], result_error: [], result_total: [], result_next: [], result_time: [] });
    const outcome = await client().batch({ a: { method: "event.get" } }, { halt: true });
    should(portal.requests[0].body.halt).equal(1);
    should(outcome).match({ result: {}, errors: {}, total: {}, next: {}, requests: 1 });
  });

  it("refuses more than 50 commands (and odd keys) without sending; an empty batch sends nothing", async () => {
    const commands: Record<string, BatchCommand> = {};
    for (let i = 0; i < 51; i++) commands[`c${i}`] = { method: "event.get" };
    const err = (await client()
      .batch(commands)
      .catch((e: unknown) => e)) as Bitrix24Error;
    should(err.code).equal("INVALID_ARGUMENT");
    should(err.description).match(/51 commands; a batch takes at most 50/);
    const badKey = (await client()
      .batch({ "a[b]": { method: "event.get" } })
      .catch((e: unknown) => e)) as Bitrix24Error;
    should(badKey.code).equal("INVALID_ARGUMENT");
    should(await client().batch({})).match({ requests: 0, result: {} });
    should(portal.requests).be.empty();
  });

  it("falls back to single calls when the portal refuses offline methods in a batch, and remembers it", async () => {
    portal.handler = (req, res) => {
      if (req.restMethod !== "batch") {
        if (req.restMethod === "event.offline.get") sendResult(res, { process_id: "p2", events: [] });
        else sendResult(res, true);
        return;
      }
      const cmd = req.body.cmd as Record<string, string>;
      const result: Record<string, unknown> = {};
      const errors: Record<string, unknown> = {};
      for (const [key, line] of Object.entries(cmd)) {
        if (line.startsWith("event.offline.")) {
          errors[key] = {
            error: "ERROR_BATCH_METHOD_NOT_ALLOWED",
            error_description: "Method is not allowed for batch usage",
          };
        } else result[key] = [{ event: "ONCRMLEADADD", offline: 1 }];
      }
      sendResult(res, { result, result_error: errors, result_total: [], result_next: [] });
    };
    const c = client();
    should(c.batchRefusesOffline).be.false();
    const commands: Record<string, BatchCommand> = {
      ack: { method: "event.offline.clear", params: { process_id: "p1", message_id: [MID] } },
      bindings: { method: "event.get" },
      next: { method: "event.offline.get", params: { clear: 0, limit: 5 } },
    };
    const first = await c.batch(commands);
    should(c.batchRefusesOffline).be.true();
    should(first.errors).eql({});
    should(first.result).eql({
      ack: true,
      bindings: [{ event: "ONCRMLEADADD", offline: 1 }],
      next: { process_id: "p2", events: [] },
    });
    should(first.requests).equal(3);
    should(portal.requests.map((r) => r.restMethod)).eql(["batch", "event.offline.clear", "event.offline.get"]);
    // The single calls carry the same parameters as the batch commands did.
    should(portal.requests[1].body).eql({ process_id: "p1", message_id: [MID] });

    portal.requests.length = 0;
    const second = await c.batch(commands);
    should(second.requests).equal(3);
    // Remembered: only the non-offline command still goes through batch.
    should(portal.requests.map((r) => r.restMethod)).eql(["batch", "event.offline.clear", "event.offline.get"]);
    should(Object.keys(portal.requests[0].body.cmd as object)).eql(["bindings"]);
    should(Object.keys(second.result)).eql(["ack", "bindings", "next"]);

    portal.requests.length = 0;
    const onlyOffline = await c.batch({ next: commands.next });
    should(onlyOffline.requests).equal(1);
    should(portal.requests.map((r) => r.restMethod)).eql(["event.offline.get"]);
  });

  it("with halt, a failing single call in the fallback stops the rest", async () => {
    portal.handler = (req, res) => {
      if (req.restMethod === "batch") {
        const errors = Object.fromEntries(
          Object.keys(req.body.cmd as object)
            .slice(0, 1)
            .map((k) => [k, { error: "ERROR_BATCH_METHOD_NOT_ALLOWED", error_description: "no" }]),
        );
        sendResult(res, { result: [], result_error: errors, result_total: [], result_next: [] });
      } else if (req.restMethod === "event.offline.clear") sendError(res, 400, "ERROR_ARGUMENT", "bad process");
      else sendResult(res, { process_id: "p", events: [] });
    };
    const outcome = await client().batch(
      {
        ack: { method: "event.offline.clear", params: { process_id: "p1", id: [1] } },
        next: { method: "event.offline.get", params: { clear: 0 } },
      },
      { halt: true },
    );
    should(outcome.errors.ack.code).equal("ERROR_ARGUMENT");
    should(outcome.result).eql({});
    should(portal.requests.map((r) => r.restMethod)).eql(["batch", "event.offline.clear"]);
  });

  it("a batch takes the bucket once", async () => {
    portal.handler = (_req, res) =>
      sendResult(res, { result: {}, result_error: [], result_total: [], result_next: [] });
    const c = client({ rateLimit: { perSecond: 1, burst: 1 } });
    const commands: Record<string, BatchCommand> = {};
    for (let i = 0; i < 50; i++) commands[`g${i}`] = { method: "event.offline.get", params: { clear: 0 } };
    const started = Date.now();
    await c.batch(commands);
    should(Date.now() - started).be.below(500);
    should(portal.requests).have.length(1);
  });
});

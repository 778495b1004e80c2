import should from "should";
import { until } from "../wait";
import { rest, restForm, sharedSandbox, webhookCall } from "./rest-call";

describe("sandbox: requests, auth, batch, rate limit, faults", () => {
  const sandbox = sharedSandbox((s) => s.setOptions({ rateLimit: false, batchAllowsOffline: true }));

  describe("request forms", () => {
    it("takes /rest/<method> and /rest/<method>.json, JSON, form and query-string parameters", async () => {
      sandbox.addEvents(3);
      const bare = await rest(sandbox, "event.offline.list", {}, { suffix: "" });
      should(bare.body.total).equal(3);
      const form = await restForm(sandbox, "event.offline.get", "clear=0&limit=1&filter[%3E%3DID]=2&order[ID]=DESC");
      should(form.body.result.events.map((e: { ID: string }) => e.ID)).eql(["3"]);
      const res = await fetch(
        `${sandbox.url}/rest/event.offline.get.json?auth=${sandbox.credentials.accessToken}&clear=0&filter%5B%3DID%5D=1`,
      );
      const query = (await res.json()) as { result: { events: { ID: string }[] } };
      should(query.result.events.map((e) => e.ID)).eql(["1"]);
    });

    it("parameter names are case-insensitive, as the REST module upper-cases them", async () => {
      sandbox.addEvents(3);
      const res = await rest(sandbox, "event.offline.get", { CLEAR: 0, Limit: 2 });
      should(res.body.result.events).have.length(2);
      should(res.body.result.process_id).be.a.String();
    });

    it("answers an unknown method with 404 ERROR_METHOD_NOT_FOUND", async () => {
      const res = await rest(sandbox, "crm.deal.nope");
      should(res.status).equal(404);
      should(res.body).eql({ error: "ERROR_METHOD_NOT_FOUND", error_description: "Method not found!" });
    });
  });

  describe("auth", () => {
    it("missing token -> 401 NO_AUTH_FOUND, unknown -> 401 invalid_token, expired -> 401 expired_token", async () => {
      const none = await rest(sandbox, "feature.get", { CODE: "rest_offline_extended" }, { auth: null });
      should([none.status, none.body.error]).eql([401, "NO_AUTH_FOUND"]);
      const unknown = await rest(sandbox, "feature.get", { CODE: "rest_offline_extended" }, { auth: "nope" });
      should([unknown.status, unknown.body.error]).eql([401, "invalid_token"]);
      sandbox.expireTokens();
      const expired = await rest(sandbox, "feature.get", { CODE: "rest_offline_extended" });
      should([expired.status, expired.body.error]).eql([401, "expired_token"]);
      sandbox.reset(); // credentials valid again
      const ok = await rest(sandbox, "feature.get", { CODE: "rest_offline_extended" });
      should(ok.status).equal(200);
    });

    it("webhooks work for feature.get but every offline and event method refuses them with WRONG_AUTH_TYPE", async () => {
      should(sandbox.credentials.webhookUrl).equal(
        `${sandbox.url}/rest/1/${new URL(sandbox.credentials.webhookUrl).pathname.split("/")[3]}/`,
      );
      const feature = await webhookCall(sandbox, "feature.get", { CODE: "rest_offline_extended" });
      should(feature.body.result).eql({ value: "Y" });
      for (const method of [
        "event.offline.get",
        "event.offline.clear",
        "event.offline.error",
        "event.offline.list",
        "event.bind",
        "event.get",
      ]) {
        const res = await webhookCall(sandbox, method, { process_id: "p", message_id: [] });
        should(res.status).equal(403);
        should(res.body).eql({
          error: "WRONG_AUTH_TYPE",
          error_description: "Current authorization type is denied for this method",
        });
      }
      const wrong = await fetch(`${sandbox.url}/rest/1/wrongsecret/feature.get.json?CODE=x`);
      should(wrong.status).equal(401);
    });
  });

  describe("feature.get", () => {
    it("answers {value} for rest_offline_extended and rest_auth_connector; CODE is required", async () => {
      should((await rest(sandbox, "feature.get", { CODE: "rest_auth_connector" })).body.result).eql({ value: "Y" });
      const empty = await rest(sandbox, "feature.get", {});
      should(empty.status).equal(400);
      should(empty.body.error).equal("CODE_EMPTY");
    });
  });

  describe("batch", () => {
    it("runs cmd[key]=method?query in order with result / result_error / result_total / result_next / result_time", async () => {
      sandbox.addEvents(60);
      const res = await rest(sandbox, "batch", {
        halt: 0,
        cmd: {
          take: "event.offline.get?clear=0&limit=2",
          list: "event.offline.list?filter[>ID]=2",
          ack: "event.offline.clear?process_id=$result[take][process_id]&id[]=1",
          bad: "event.offline.get?limit=0",
        },
      });
      should(res.status).equal(200);
      const { result } = res.body;
      should(Object.keys(result)).eql(["result", "result_error", "result_total", "result_next", "result_time"]);
      should(result.result.take.events).have.length(2);
      should(result.result.ack).equal(true);
      should(result.result_total).eql({ list: 58 });
      should(result.result_next).eql({ list: 50 });
      should(result.result_error.bad.error).equal("ERROR_ARGUMENT");
      // Only commands that ran have a time (the batch page's failure examples: `result_time: []`).
      should(Object.keys(result.result_time)).eql(["take", "list", "ack"]);
      should(res.body.time).have.property("operating");
      should(sandbox.records().map((r) => r.ID)).not.containEql("1");
    });

    it("empty sections are [] and list-keyed commands give arrays, as PHP's json_encode does", async () => {
      const res = await rest(sandbox, "batch", {
        cmd: ["feature.get?CODE=rest_offline_extended", "feature.get?CODE=rest_auth_connector"],
      });
      should(res.body.result.result).eql([{ value: "Y" }, { value: "Y" }]);
      should(res.body.result.result_error).eql([]);
      should(res.body.result.result_total).eql([]);
    });

    it("halt=1 stops at the first error", async () => {
      const res = await rest(sandbox, "batch", {
        halt: 1,
        cmd: { a: "feature.get?CODE=x", b: "nope.method", c: "feature.get?CODE=y" },
      });
      should(Object.keys(res.body.result.result)).eql(["a"]);
      should(res.body.result.result_error.b.error).equal("ERROR_METHOD_NOT_FOUND");
      should(res.body.result.result_time).not.have.property("c");
    });

    it("refuses more than 50 commands with ERROR_BATCH_LENGTH_EXCEEDED", async () => {
      const cmd: Record<string, string> = {};
      for (let i = 0; i < 51; i++) cmd[`c${i}`] = "feature.get?CODE=x";
      const res = await rest(sandbox, "batch", { cmd });
      should(res.status).equal(400);
      should(res.body.error).equal("ERROR_BATCH_LENGTH_EXCEEDED");
    });

    it("batchAllowsOffline=false refuses offline methods inside batch with ERROR_BATCH_METHOD_NOT_ALLOWED", async () => {
      sandbox.setOptions({ batchAllowsOffline: false });
      const res = await rest(sandbox, "batch", {
        cmd: { get: "event.offline.get?clear=0", feature: "feature.get?CODE=x", nested: "batch?cmd[a]=feature.get" },
      });
      should(res.body.result.result_error.get.error).equal("ERROR_BATCH_METHOD_NOT_ALLOWED");
      should(res.body.result.result_error.nested.error).equal("ERROR_BATCH_METHOD_NOT_ALLOWED");
      should(res.body.result.result.feature).eql({ value: "Y" });
    });
  });

  describe("rate limit", () => {
    it("answers 503 QUERY_LIMIT_EXCEEDED above the burst, counts a batch once and drains perSecond", async () => {
      // A slow drain: on a loaded machine the seven requests may take a second, which must not free a slot.
      sandbox.setOptions({ rateLimit: { burst: 5, perSecond: 0.5 } });
      const cmd: Record<string, string> = {};
      for (let i = 0; i < 50; i++) cmd[`c${i}`] = "feature.get?CODE=x";
      const answers = [];
      answers.push(await rest(sandbox, "batch", { cmd }));
      for (let i = 0; i < 6; i++) answers.push(await rest(sandbox, "feature.get", { CODE: "x" }));
      should(answers.map((a) => a.status)).eql([200, 200, 200, 200, 200, 503, 503]);
      should(answers[5].body).eql({ error: "QUERY_LIMIT_EXCEEDED", error_description: "Too many requests" });
      should(sandbox.stats().requests.rejected503).equal(2);
      should(sandbox.stats().requests.batches).equal(1);
      await new Promise((r) => setTimeout(r, 2100)); // 0.5/s drains 1 in 2 s
      should((await rest(sandbox, "feature.get", { CODE: "x" })).status).equal(200);
    });
  });

  describe("faults", () => {
    afterEach(() => sandbox.setFaults({}));

    it("errorRate 1 answers every call of the chosen methods with errorCode and the seeds' status", async () => {
      sandbox.setFaults({ errorRate: 1, errorCode: "OPERATION_TIME_LIMIT", methods: ["event.offline.get"] });
      const limited = await rest(sandbox, "event.offline.get");
      should([limited.status, limited.body.error]).eql([429, "OPERATION_TIME_LIMIT"]);
      should((await rest(sandbox, "feature.get", { CODE: "x" })).status).equal(200);
      sandbox.setFaults({ errorRate: 1 });
      const internal = await rest(sandbox, "feature.get", { CODE: "x" });
      should([internal.status, internal.body.error]).eql([500, "INTERNAL_SERVER_ERROR"]);
      sandbox.setFaults({ errorRate: 1, errorCode: "QUERY_LIMIT_EXCEEDED" });
      should((await rest(sandbox, "feature.get", { CODE: "x" })).status).equal(503);
    });

    it("latencyMs delays answers", async () => {
      sandbox.setFaults({ latencyMs: 150 });
      const started = Date.now();
      await rest(sandbox, "feature.get", { CODE: "x" });
      should(Date.now() - started).be.aboveOrEqual(140);
    });

    it("holdAnswerMs holds the records at once and answers late, only for a get that held some", async () => {
      sandbox.addEvents(5);
      sandbox.setFaults({ holdAnswerMs: 400 });
      const started = Date.now();
      const answer = rest(sandbox, "event.offline.get", { clear: 0, limit: 3 });
      // inside the delay the records are already held under a process id the caller has not seen yet
      await until(() => sandbox.stats().queue.holds === 1, 300, "the get held its records");
      should(sandbox.stats().queue.held).equal(3);
      should(Date.now() - started).be.below(350);
      const done = await answer;
      should(Date.now() - started).be.aboveOrEqual(390);
      should(done.body.result.events).have.length(3);
      // a get that holds nothing (a re-select, a plain read) is not delayed
      const quick = Date.now();
      await rest(sandbox, "event.offline.get", { process_id: done.body.result.process_id, clear: 0 });
      await rest(sandbox, "event.offline.list", {});
      should(Date.now() - quick).be.below(300);
      // the control API sets it too
      const res = await fetch(`${sandbox.url}/_sandbox/faults`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ holdAnswerMs: 250, methods: ["batch"] }),
      });
      should((await res.json()).faults).eql({ holdAnswerMs: 250, methods: ["batch"] });
    });

    it("dropBeforeRate drops the connection without applying; dropAfterRate applies, then drops", async () => {
      sandbox.addEvents(10);
      sandbox.setFaults({ dropBeforeRate: 1 });
      await should(rest(sandbox, "event.offline.get", { limit: 5 })).be.rejected();
      should(sandbox.stats().queue.total).equal(10);
      sandbox.setFaults({ dropAfterRate: 1 });
      await should(rest(sandbox, "event.offline.get", { limit: 5 })).be.rejected();
      should(sandbox.stats().queue.total).equal(5);
    });
  });
});

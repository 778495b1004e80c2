import axios from "axios";
import should from "should";
import { type Sandbox, type SandboxOptions, startSandbox } from "../../src/sandbox";
import { triggerNode } from "../kit/flows.cjs";
import { nodeRedPerTest } from "../kit/node-red";
import { recordBadInput, sleep, until } from "./ledger";
import {
  callsOf,
  GET_DEFAULTS,
  helper,
  lastStatus,
  loadFlow,
  type SpiedNode,
  startHttpNodeServer,
  statusesOf,
} from "./node-rig";

interface Failure {
  code: string;
  message: string;
}

/**
 * Bad configuration and bad msgs: each must end in a clear error in the node's status and in the debug sidebar
 * (node.error), never in a crash, a hang or a lost event (the queue is checked to be untouched).
 */
describe("reliability: bad input", function () {
  this.timeout(20000);
  let sandbox: Sandbox | undefined;
  nodeRedPerTest({ httpNodeRoot: "/" }, () => sandbox);

  async function portal(options: SandboxOptions = {}): Promise<Sandbox> {
    sandbox = await startSandbox({ rateLimit: false, events: 5, ...options });
    return sandbox;
  }

  function getFlow(get: Record<string, unknown> = {}): Array<Record<string, unknown>> {
    return [
      { id: "g", ...GET_DEFAULTS, ...get, wires: [["out"], ["empty"], []] },
      { id: "out", type: "helper" },
      { id: "empty", type: "helper" },
    ];
  }

  function errorsOf(node: SpiedNode): Failure[] {
    return callsOf(node, "error").map((a) => a[0] as Failure);
  }

  /** A msg into the get node fails through done(err): red status, node.error with the msg, nothing fetched. */
  async function expectMsgRefused(node: SpiedNode, msg: Record<string, unknown>, pattern: RegExp): Promise<void> {
    const before = errorsOf(node).length;
    node.receive({ ...msg, _tag: "bad" });
    await until(() => errorsOf(node).length > before, 3000, `an error for ${JSON.stringify(msg)}`);
    const call = callsOf(node, "error")[before] as [Failure, { _tag?: string }];
    should(call[0].message).match(pattern);
    should(call[1]?._tag).equal("bad"); // with the msg: a Catch node gets it
    should(lastStatus(node)?.fill).equal("red");
  }

  describe("portal configuration", () => {
    const cases: Array<{
      name: string;
      portal: Record<string, unknown>;
      credentials?: Record<string, string>;
      pattern: RegExp;
    }> = [
      { name: "invalid portal URL", portal: { portalUrl: "not a url" }, pattern: /INVALID_CONFIG.*(URL|url)/ },
      { name: "http:// portal", portal: { portalUrl: "http://example.bitrix24.com" }, pattern: /https/ },
      { name: "ftp:// portal", portal: { portalUrl: "ftp://example.bitrix24.com" }, pattern: /only https/ },
      {
        name: "user and password in the URL",
        portal: { portalUrl: "https://admin:hunter2@example.bitrix24.com" },
        pattern: /user name or password/,
      },
      {
        name: "http:// OAuth server",
        portal: { oauthServer: "http://oauth.example.com" },
        pattern: /OAuth server URL.*https/,
      },
      { name: "no client secret", portal: {}, credentials: { clientSecret: "" }, pattern: /client secret/ },
      { name: "no tokens", portal: {}, credentials: { accessToken: "", refreshToken: "" }, pattern: /Authorize/ },
    ];
    for (const c of cases) {
      it(`${c.name}: red status and an error on deploy, msgs fail with it, no request sent`, async () => {
        const sb = await portal();
        const flow = await loadFlow(sb, getFlow(), { portal: c.portal, credentials: c.credentials });
        const errors = errorsOf(flow.get);
        should(errors.length).be.above(0);
        should(errors[0].message).match(c.pattern);
        should(lastStatus(flow.get)?.fill).equal("red");
        await expectMsgRefused(flow.get, {}, c.pattern);
        should(sb.stats().requests.total).equal(0);
        should(sb.stats().queue.total).equal(5);
        recordBadInput(`portal: ${c.name}`, 2);
      });
    }
  });

  describe("the portal refuses", () => {
    const cases: Array<{
      name: string;
      sandbox?: SandboxOptions;
      faults?: Parameters<Sandbox["setFaults"]>[0];
      credentials?: (sb: Sandbox) => Record<string, string>;
      pattern: RegExp;
    }> = [
      {
        name: "wrong client secret (refresh refused)",
        credentials: () => ({ clientSecret: "wrong-secret", accessToken: "" }),
        pattern: /invalid_client/,
      },
      {
        name: "wrong access and refresh token",
        credentials: () => ({ accessToken: "0123456789abcdef0123456789abcdef", refreshToken: "nope" }),
        pattern: /invalid_grant.*re-authorise/,
      },
      {
        name: "insufficient_scope",
        faults: { errorRate: 1, errorCode: "insufficient_scope" },
        pattern: /insufficient_scope/,
      },
      { name: "ACCESS_DENIED (not an administrator)", sandbox: { admin: false }, pattern: /ACCESS_DENIED/ },
      { name: "PORTAL_DELETED", faults: { errorRate: 1, errorCode: "PORTAL_DELETED" }, pattern: /PORTAL_DELETED/ },
      {
        name: "user_access_error",
        faults: { errorRate: 1, errorCode: "user_access_error" },
        pattern: /user_access_error/,
      },
      {
        name: "offline events unavailable (feature.get: no extended mode)",
        sandbox: { extendedMode: false },
        pattern: /rest_offline_extended/,
      },
    ];
    for (const c of cases) {
      it(`${c.name}: a clear error in status and debug, no crash, no event touched`, async () => {
        const sb = await portal(c.sandbox);
        const flow = await loadFlow(sb, getFlow(), { credentials: c.credentials?.(sb) });
        if (c.faults) sb.setFaults(c.faults);
        await expectMsgRefused(flow.get, {}, c.pattern);
        // And again: a second trigger is reported too (not swallowed), and the status stays red. (The get node
        // reports a failure once per error object, so a consumer that rejected every later trigger with one
        // cached refusal made the node show green "idle".)
        await expectMsgRefused(flow.get, {}, c.pattern);
        should(lastStatus(flow.get)?.text).be.a.String().and.not.be.empty();
        sb.setFaults({});
        should(sb.stats().queue.total).equal(5);
        should(sb.stats().queue.held).equal(0);
        should(flow.seen.out).be.empty();
        recordBadInput(`portal refuses: ${c.name}`, 2);
      });
    }
  });

  describe("get node configuration and msg overrides", () => {
    const configCases: Array<{ name: string; get: Record<string, unknown>; pattern: RegExp }> = [
      { name: "malformed filter JSON", get: { filter: "{not json" }, pattern: /filter/ },
      { name: "malformed order JSON", get: { order: "[" }, pattern: /order/ },
      { name: "unknown filter field", get: { filter: '{"=FOO": 1}' }, pattern: /filter.*FOO/ },
      { name: "unknown filter operator", get: { filter: '{"~ID": 1}' }, pattern: /filter.*~/ },
      { name: "array filter value", get: { filter: '{"=ID": [1, 2]}' }, pattern: /filter/ },
      { name: "unknown order direction", get: { order: '{"ID": "SIDEWAYS"}' }, pattern: /order/ },
      { name: "limit 0", get: { limit: 0 }, pattern: /limit/ },
      { name: "negative limit", get: { limit: -5 }, pattern: /limit/ },
      { name: "limit not a number", get: { limit: "lots" }, pattern: /limit/ },
      { name: "maxDeliveries 0", get: { maxDeliveries: 0 }, pattern: /maxDeliveries/ },
      { name: "unknown mode", get: { mode: "maybe" }, pattern: /mode/ },
    ];
    for (const c of configCases) {
      it(`config ${c.name}: refused on deploy naming the property, msgs fail, nothing fetched`, async () => {
        const sb = await portal();
        const flow = await loadFlow(sb, getFlow(c.get));
        should(errorsOf(flow.get)[0]?.message).match(c.pattern);
        should(lastStatus(flow.get)?.fill).equal("red");
        await expectMsgRefused(flow.get, {}, c.pattern);
        should(sb.stats().requests.total).equal(0);
        recordBadInput(`get config: ${c.name}`, 1);
      });
    }

    it("msg overrides of the wrong type or value: each refused with the msg, the queue untouched", async () => {
      const sb = await portal();
      const flow = await loadFlow(sb, getFlow({ drain: false }));
      const bad: Array<[Record<string, unknown>, RegExp]> = [
        [{ limit: 0 }, /msg\.limit/],
        [{ limit: -1 }, /msg\.limit/],
        [{ limit: 1e20 }, /msg\.limit/],
        [{ limit: "abc" }, /msg\.limit/],
        [{ limit: { n: 5 } }, /msg\.limit/],
        [{ limit: 2.5 }, /msg\.limit/],
        [{ filter: 42 }, /msg\.filter/],
        [{ filter: "{broken" }, /msg\.filter/],
        [{ filter: { "=NOPE": 1 } }, /msg\.filter.*NOPE/],
        [{ filter: { "><ID": 1 } }, /msg\.filter/],
        [{ filter: ["=ID", 1] }, /msg\.filter/],
        [{ order: "x" }, /msg\.order/],
        [{ order: { ID: "SIDEWAYS" } }, /msg\.order/],
        [{ order: { PROCESS_ID: "ASC" } }, /msg\.order/],
        [{ processId: 123 }, /msg\.processId/],
        [{ processId: { id: "x" } }, /msg\.processId/],
      ];
      for (const [msg, pattern] of bad) await expectMsgRefused(flow.get, msg, pattern);
      should(sb.stats().queue.total).equal(5);
      should(sb.stats().queue.held).equal(0);
      should(flow.seen.out).be.empty();
      recordBadInput("get msg overrides (16 kinds)", bad.length);
    });

    it('msg.pause of the wrong type ("true", 1) is refused, not taken as a fetch trigger', async () => {
      const sb = await portal();
      const flow = await loadFlow(sb, getFlow({ mode: "auto" }));
      for (const pause of ["true", 1, "yes"]) await expectMsgRefused(flow.get, { pause }, /msg\.pause/);
      await sleep(50);
      should(flow.seen.out).be.empty(); // nothing fetched: a user who meant to pause must not drain the queue
      should(sb.stats().queue.total).equal(5);
      recordBadInput("get msg.pause of the wrong type", 3);
    });

    it("a huge limit (100000) is taken, capped by maxInFlight in ack mode, no crash", async () => {
      const sb = await portal({ events: 700 });
      const flow = await loadFlow(sb, getFlow({ drain: false, maxInFlight: 200 }));
      flow.get.receive({ limit: 100000 });
      await until(() => (flow.seen.out?.length ?? 0) === 200, 5000, "200 deliveries");
      await sleep(50);
      should(flow.seen.out).have.length(200);
      should(sb.stats().queue.held).equal(200);
      recordBadInput("get: huge msg.limit", 1);
    });
  });

  describe("clear and error nodes", () => {
    it("msgs without a process id (or from auto mode) are refused with a clear error and no call", async () => {
      const sb = await portal();
      const flow = await loadFlow(sb, [
        { id: "c", type: "bitrix24-offline-clear", portal: "p", wires: [["cleared"]] },
        { id: "e", type: "bitrix24-offline-error", portal: "p", wires: [["marked"]] },
        { id: "cleared", type: "helper" },
        { id: "marked", type: "helper" },
      ]);
      const clear = helper.getNode("c") as unknown as SpiedNode;
      const error = helper.getNode("e") as unknown as SpiedNode;
      const bad: Array<[SpiedNode, Record<string, unknown>, RegExp]> = [
        [clear, { payload: { ID: "1" } }, /no process id/],
        [clear, { ids: [1, 2] }, /no process id/],
        [clear, { payload: { ID: "1" }, bitrix24: { processId: null, id: 1 } }, /auto mode/],
        [clear, { processId: 42, ids: [1] }, /msg\.processId/],
        [clear, { processId: "p".repeat(32), ids: "1,2" }, /ids/],
        [clear, { processId: "p".repeat(32), ids: [] }, /nothing cleared/],
        [clear, { processId: "p".repeat(32), ids: [-1, 0] }, /positive integer/],
        [error, { payload: { MESSAGE_ID: "a".repeat(32) } }, /no process id/],
        [error, { messageIds: ["a".repeat(32)] }, /no process id/],
        [error, { processId: "p".repeat(32), messageIds: [] }, /empty msg\.messageIds/],
        [error, { processId: "p".repeat(32), messageIds: "nope" }, /messageIds/],
      ];
      for (const [node, msg, pattern] of bad) {
        const before = errorsOf(node).length;
        node.receive({ ...msg, _tag: "bad" });
        await until(() => errorsOf(node).length > before, 3000, `an error for ${JSON.stringify(msg)}`);
        const [err, withMsg] = callsOf(node, "error")[before] as [Failure, { _tag?: string }];
        should(err.message).match(pattern);
        should(withMsg?._tag).equal("bad");
        should(lastStatus(node)?.fill).equal("red");
      }
      await sleep(30);
      should(flow.seen.cleared).be.empty();
      should(flow.seen.marked).be.empty();
      should(sb.stats().requests.total).equal(0);
      should(sb.stats().queue.total).equal(5);
      recordBadInput("clear/error msgs without a usable process id", bad.length);
    });
  });

  describe("trigger endpoint", () => {
    let server: Awaited<ReturnType<typeof startHttpNodeServer>>;
    const PATH = "/b24/rel";

    before(async () => {
      server = await startHttpNodeServer();
    });

    after(async () => {
      await server.close();
    });

    function form(token: string | undefined, ts: string): string {
      const params = new URLSearchParams();
      params.set("event", "ONOFFLINEEVENT");
      params.set("ts", ts);
      params.set("auth[access_token]", "leaked-access");
      if (token !== undefined) params.set("auth[application_token]", token);
      return params.toString();
    }

    function post(body: string, contentType = "application/x-www-form-urlencoded") {
      return axios.post(`${server.url}${PATH}`, body, {
        headers: { "Content-Type": contentType },
        validateStatus: () => true,
        transformRequest: [(data) => data],
      });
    }

    it("refuses missing/wrong tokens (401), oversized (413) and malformed bodies (400), and replays: no msg", async () => {
      const sb = await portal();
      const flow = await loadFlow(sb, [
        triggerNode({ id: "t", path: PATH, followUp: 0, minGap: 0, wires: [["fired"]] }),
        { id: "fired", type: "helper" },
      ]);
      const token = sb.credentials.applicationToken;
      const statuses: Array<[string, number]> = [];
      const check = async (name: string, body: string, expected: number, type?: string) => {
        const answer = await post(body, type);
        statuses.push([name, answer.status]);
        should(answer.status).equal(expected);
        should(String(answer.data)).not.containEql(token);
      };
      await check("no token", form(undefined, "1700000001"), 401);
      await check("wrong token", form("x".repeat(token.length), "1700000002"), 401);
      await check("token of another length", form(`${token}x`, "1700000003"), 401);
      await check("empty body", "", 401);
      await check("oversized", `${form(token, "1700000004")}&pad=${"x".repeat(300 * 1024)}`, 413);
      await check("malformed JSON", '{"event": "ONOFFLINEEVENT", auth: ', 400, "application/json");
      await check("JSON array", "[1, 2]", 400, "application/json");
      await check("malformed form", "%%%&&&auth[[[application_token=%zz", 401);
      should(flow.seen.fired).be.empty();
      await check("valid", form(token, "1700000009"), 200);
      await check("replayed", form(token, "1700000009"), 200);
      await sleep(100);
      should(flow.seen.fired).have.length(1);
      const trigger = helper.getNode("t") as unknown as SpiedNode;
      // Refusals are reported (throttled) as warnings; the node keeps running, green.
      should(callsOf(trigger, "warn").length).be.above(0);
      should(statusesOf(trigger).some((s) => s.fill === "red")).be.false();
      recordBadInput("trigger endpoint (tokens, size, malformed, replay)", statuses.length - 1);
    });
  });
});

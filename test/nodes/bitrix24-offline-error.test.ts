import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import helper from "node-red-node-test-helper";
import should from "should";
import type { OfflineEventsApi } from "../../src/core/queue/offline-api";
import type { OfflineGetResult } from "../../src/core/rest/types";
import type { EventMessage } from "../../src/nodes/shared/msg-contract";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { until } from "../wait";

// The build output, as Node-RED loads it.
const portalNode = require("../../nodes/nodes/bitrix24-portal/bitrix24-portal.js").default;
const errorNode = require("../../nodes/nodes/bitrix24-offline-error/bitrix24-offline-error.js").default;
const catchNode = require("@node-red/nodes/core/common/25-catch.js");

helper.init(require.resolve("node-red"));

type Status = { fill?: string; shape?: string; text?: string };

interface SpiedNode {
  status: { args: Array<[Status]> };
  receive(msg: Record<string, unknown>): void;
}

interface OutMsg extends EventMessage {
  _tag?: string;
  error?: { message: string; code?: string };
}

/** One msg per event, as bitrix24-offline-get emits them (msg-contract.ts). */
function eventMsgs(got: OfflineGetResult, options: { authConnector?: string; error?: 0 | 1 } = {}): EventMessage[] {
  const size = got.events.length;
  return got.events.map((event, index) => ({
    payload: event,
    topic: event.EVENT_NAME,
    bitrix24: {
      portal: "127.0.0.1",
      processId: got.process_id,
      authConnector: options.authConnector ?? "",
      id: Number(event.ID),
      messageId: event.MESSAGE_ID,
      error: options.error ?? 0,
      deliveryCount: 1,
      redelivered: false,
      batch: { index, size },
    },
  }));
}

describe("bitrix24-offline-error node", function () {
  this.timeout(10000);
  let sandbox: Sandbox;
  let userDir: string;
  let node: SpiedNode;
  let api: OfflineEventsApi;
  let out: OutMsg[];
  let caught: OutMsg[];

  beforeEach(async () => {
    sandbox = await startSandbox({ rateLimit: false });
    userDir = mkdtempSync(join(tmpdir(), "b24-error-"));
    helper.settings({ userDir });
    const c = sandbox.credentials;
    const flow = [
      {
        id: "p",
        type: "bitrix24-portal",
        portalUrl: sandbox.url,
        authType: "oauth",
        oauthServer: sandbox.url,
        rateLimit: 50,
        rateBurst: 50,
      },
      { id: "e", type: "bitrix24-offline-error", portal: "p", wires: [["out"]] },
      { id: "out", type: "helper" },
      { id: "k", type: "catch", scope: ["e"], uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper" },
    ];
    await helper.load([portalNode, errorNode, catchNode], flow, {
      p: {
        clientId: c.clientId,
        clientSecret: c.clientSecret,
        accessToken: c.accessToken,
        refreshToken: c.refreshToken,
        applicationToken: c.applicationToken,
      },
    });
    out = [];
    caught = [];
    helper.getNode("out").on("input", (msg: unknown) => out.push(msg as OutMsg));
    helper.getNode("caught").on("input", (msg: unknown) => caught.push(msg as OutMsg));
    api = (helper.getNode("p") as unknown as { api: OfflineEventsApi }).api;
    node = helper.getNode("e") as unknown as SpiedNode;
  });

  afterEach(async () => {
    await helper.unload();
    await sandbox.close();
    rmSync(userDir, { recursive: true, force: true });
  });

  async function fetchHeld(count: number, options: { authConnector?: string; error?: 0 | 1 } = {}) {
    const got = await api.get({
      clear: 0,
      limit: count,
      ...(options.authConnector ? { auth_connector: options.authConnector } : {}),
      ...(options.error ? { error: options.error } : {}),
    });
    should(got.events).have.length(count);
    return got;
  }

  function send(msg: unknown): void {
    node.receive(msg as Record<string, unknown>);
  }

  it("marks records (coalesced into one request): ERROR=1 and PROCESS_ID null on the portal", async () => {
    sandbox.addEvents(6);
    const got = await fetchHeld(6);
    const msgs = eventMsgs(got);
    for (const msg of msgs.slice(0, 5)) send(msg);
    await until(() => out.length === 5);
    should(out.every((m) => m.bitrix24.acked === true)).be.true();
    should(sandbox.stats().requests.byMethod["event.offline.error"]).equal(1);
    const records = sandbox.records();
    const marked = records.filter((r) => r.ERROR === "1");
    should(marked.map((r) => r.ID).sort()).eql(
      got.events
        .slice(0, 5)
        .map((e) => e.ID)
        .sort(),
    );
    should(marked.every((r) => r.PROCESS_ID === null)).be.true();
    // The sixth is untouched and still held.
    should(records.find((r) => r.ID === got.events[5].ID)).match({ ERROR: "0", PROCESS_ID: got.process_id });
    // A get with error=1 returns them later.
    const replay = await api.get({ clear: 0, error: 1, limit: 50 });
    should(replay.events).have.length(5);
    await until(() => /status\.acked/.test(node.status.args.at(-1)?.[0].text ?? ""));
  });

  it("marks a batch msg's events and carries the auth_connector", async () => {
    sandbox.addEvents(3, { connector: "c9" });
    const got = await fetchHeld(3, { authConnector: "c9" });
    send({
      payload: got.events,
      bitrix24: { ...eventMsgs(got, { authConnector: "c9" })[0].bitrix24, id: 0, messageId: "" },
    });
    await until(() => out.length === 1);
    const records = sandbox.records();
    should(records.every((r) => r.ERROR === "1" && r.PROCESS_ID === null)).be.true();
    should(records).have.length(3);
  });

  it("refuses a msg of records fetched with error=1, saying to store and clear them", async () => {
    sandbox.addEvents(1);
    const first = await fetchHeld(1);
    await api.error({ process_id: first.process_id!, message_id: [first.events[0].MESSAGE_ID] });
    const replay = await fetchHeld(1, { error: 1 });
    const before = sandbox.stats().requests.total;
    send({ ...eventMsgs(replay, { error: 1 })[0], _tag: "again" });
    await until(() => caught.length === 1);
    should(caught[0]._tag).equal("again");
    should(caught[0].error?.message).match(/fetched with error=1/);
    should(caught[0].error?.message).match(/cannot mark them again/);
    should(caught[0].error?.message).match(/clear them with bitrix24-offline-clear/);
    should(out).have.length(0);
    should(sandbox.stats().requests.total).equal(before);
  });

  it("refuses msg.ids alone (the portal marks by MESSAGE_ID) and a msg without a process id", async () => {
    send({ ids: [1], processId: "p".repeat(32), _tag: "ids" });
    send({ messageIds: ["a".repeat(32)], _tag: "noproc" });
    await until(() => caught.length === 2);
    const byTag = Object.fromEntries(caught.map((m) => [m._tag, m.error?.message ?? ""]));
    should(byTag.ids).match(/MESSAGE_ID only/);
    should(byTag.noproc).match(/no process id: wire this node after a bitrix24-offline-get in ack mode/);
    should(sandbox.stats().requests.total).equal(0);
  });

  it("a portal failure reaches Catch with the original msg", async () => {
    sandbox.addEvents(2);
    const got = await fetchHeld(2);
    sandbox.setFaults({ errorRate: 1, errorCode: "ACCESS_DENIED", methods: ["event.offline.error"] });
    for (const msg of eventMsgs(got)) send({ ...msg, _tag: msg.bitrix24.id });
    await until(() => caught.length === 2);
    should(caught.every((m) => m.error?.code === "ACCESS_DENIED")).be.true();
    should(out).have.length(0);
    should(sandbox.records().every((r) => r.ERROR === "0")).be.true();
  });
});

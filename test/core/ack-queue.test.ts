import should from "should";
import { type AckedNotice, AckQueue } from "../../src/core/acks/ack-queue";
import type { Bitrix24Client } from "../../src/core/client/client";
import { OfflineEventsApi } from "../../src/core/queue/offline-api";
import { Bitrix24Error } from "../../src/core/rest/errors";
import type { OfflineGetResult } from "../../src/core/rest/types";
import { type Sandbox, type SandboxOptions, startSandbox } from "../../src/sandbox";
import { sandboxClient } from "../kit/sandbox-client";

interface Rig {
  sandbox: Sandbox;
  client: Bitrix24Client;
  api: OfflineEventsApi;
  acks: AckQueue;
  notices: AckedNotice[];
}

async function rejection(p: Promise<unknown>): Promise<Bitrix24Error> {
  try {
    await p;
  } catch (err) {
    return err as Bitrix24Error;
  }
  throw new Error("expected a rejection");
}

describe("AckQueue (against the sandbox)", function () {
  this.timeout(10000);
  let rig: Rig | undefined;

  async function setup(
    sandboxOptions: SandboxOptions = {},
    queueOptions: ConstructorParameters<typeof AckQueue>[1] = {},
    rateLimit: { perSecond: number; burst: number } | false = false,
  ): Promise<Rig> {
    const sandbox = await startSandbox({ rateLimit: false, ...sandboxOptions });
    const client = sandboxClient(sandbox, {
      rateLimit,
      retry: { maxAttempts: 1 },
    });
    const api = new OfflineEventsApi(client);
    const acks = new AckQueue(api, queueOptions);
    const notices: AckedNotice[] = [];
    acks.on("acked", (n) => notices.push(n));
    rig = { sandbox, client, api, acks, notices };
    return rig;
  }

  afterEach(async () => {
    if (!rig) return;
    await rig.acks.close().catch(() => undefined);
    rig.client.close();
    await rig.sandbox.close();
    rig = undefined;
  });

  async function fetchHeld(r: Rig, count: number, authConnector?: string): Promise<OfflineGetResult> {
    r.sandbox.addEvents(count, authConnector ? { connector: authConnector } : undefined);
    const got = await r.api.get({
      clear: 0,
      limit: count,
      ...(authConnector ? { auth_connector: authConnector } : {}),
    });
    should(got.events).have.length(count);
    should(got.process_id).be.a.String();
    return got;
  }

  function clearRequests(r: Rig): number {
    return r.sandbox.stats().requests.byMethod["event.offline.clear"] ?? 0;
  }

  it("coalesces 50 single-event acks into ONE event.offline.clear request", async () => {
    const r = await setup();
    const got = await fetchHeld(r, 50);
    const before = r.sandbox.stats().requests.total;
    await Promise.all(got.events.map((e) => r.acks.clear({ processId: got.process_id!, ids: [Number(e.ID)] })));
    const stats = r.sandbox.stats();
    should(stats.requests.total - before).equal(1);
    should(clearRequests(r)).equal(1);
    should(stats.queue.total).equal(0);
    should(r.notices).have.length(1);
    should(r.notices[0]).match({ kind: "clear", processId: got.process_id, authConnector: "", allOfProcess: false });
    should(r.notices[0].ids).have.length(50);
    should(r.acks.pending()).equal(0);
  });

  it("keeps gathering while a call waits on the rate limiter: spread-out acks share the next call", async () => {
    // 5 requests/s, no burst to speak of: 40 acks 15 ms apart (600 ms) must not become 40 queued calls.
    const r = await setup({}, {}, { perSecond: 5, burst: 1 });
    const got = await fetchHeld(r, 40);
    const before = clearRequests(r);
    const waiting: Array<Promise<void>> = [];
    for (const e of got.events) {
      waiting.push(r.acks.clear({ processId: got.process_id!, ids: [Number(e.ID)] }));
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    await Promise.all(waiting);
    should(r.sandbox.stats().queue.total).equal(0);
    should(clearRequests(r) - before).be.belowOrEqual(6);
    should(r.notices.reduce((n, x) => n + x.ids.length, 0)).equal(40);
  });

  it("counts queued targets in pending() until they are sent", async () => {
    const r = await setup({}, { flushDelayMs: 50 });
    const got = await fetchHeld(r, 3);
    const sent = got.events.map((e) => r.acks.clear({ processId: got.process_id!, ids: [Number(e.ID)] }));
    should(r.acks.pending()).equal(3);
    await Promise.all(sent);
    should(r.acks.pending()).equal(0);
  });

  it("merges duplicate ids: acking the same event twice is harmless and costs nothing extra", async () => {
    const r = await setup();
    const got = await fetchHeld(r, 2);
    const id = Number(got.events[0].ID);
    await Promise.all([
      r.acks.clear({ processId: got.process_id!, ids: [id, id] }),
      r.acks.clear({ processId: got.process_id!, ids: [id] }),
    ]);
    should(r.notices[0].ids).eql([id]);
    // Once more after it is gone: the portal answers true, nothing else is touched.
    await r.acks.clear({ processId: got.process_id!, ids: [id] });
    should(r.sandbox.records().map((rec) => rec.ID)).eql([got.events[1].ID]);
  });

  it("clears by message id", async () => {
    const r = await setup();
    const got = await fetchHeld(r, 3);
    await r.acks.clear({
      processId: got.process_id!,
      messageIds: [got.events[0].MESSAGE_ID, got.events[1].MESSAGE_ID],
    });
    should(r.sandbox.records().map((rec) => rec.MESSAGE_ID)).eql([got.events[2].MESSAGE_ID]);
    should(r.notices[0].messageIds).have.length(2);
    should(r.notices[0].ids).eql([]);
  });

  it("never sends id and message_id together: a target with both becomes two calls", async () => {
    const r = await setup();
    const got = await fetchHeld(r, 3);
    await r.acks.clear({
      processId: got.process_id!,
      ids: [Number(got.events[0].ID)],
      messageIds: [got.events[1].MESSAGE_ID],
    });
    should(r.notices).have.length(2);
    for (const n of r.notices) should(n.ids.length === 0 || n.messageIds.length === 0).be.true();
    should(r.sandbox.records().map((rec) => rec.ID)).eql([got.events[2].ID]);
    // Two commands due at once share one batch request.
    should(r.sandbox.stats().requests.byMethod.batch).equal(1);
  });

  it("refuses an empty target instead of clearing the whole process, and sends nothing", async () => {
    const r = await setup();
    const got = await fetchHeld(r, 2);
    const before = r.sandbox.stats().requests.total;
    const err = await rejection(r.acks.clear({ processId: got.process_id!, ids: [] }));
    should(err.code).equal("INVALID_ARGUMENT");
    should(err.description).match(/empty list would clear every record/);
    should((await rejection(r.acks.clear({ processId: got.process_id! }))).code).equal("INVALID_ARGUMENT");
    should((await rejection(r.acks.error({ processId: got.process_id!, messageIds: [] }))).code).equal(
      "INVALID_ARGUMENT",
    );
    should(r.sandbox.stats().requests.total).equal(before);
    should(r.sandbox.stats().queue.total).equal(2);
  });

  it("refuses a missing process id and bad id types", async () => {
    const r = await setup();
    should((await rejection(r.acks.clear({ processId: "", ids: [1] }))).description).match(/process_id is required/);
    const bad = await rejection(r.acks.clear({ processId: "p", ids: [-1] }));
    should(bad.description).match(/positive integer/);
    should((await rejection(r.acks.clear({ processId: "p", ids: ["x" as unknown as number] }))).code).equal(
      "INVALID_ARGUMENT",
    );
    should((await rejection(r.acks.clear({ processId: "p", messageIds: ["short"] }))).description).match(
      /32-character/,
    );
    should(r.sandbox.stats().requests.total).equal(0);
  });

  it("clears every record of a process only when allOfProcess is asked for", async () => {
    const r = await setup();
    const got = await fetchHeld(r, 5);
    r.sandbox.addEvents(2); // unheld: must survive
    await r.acks.clear({ processId: got.process_id!, allOfProcess: true });
    should(r.sandbox.records()).have.length(2);
    should(r.sandbox.records().every((rec) => rec.PROCESS_ID === null)).be.true();
    should(r.notices[0]).match({ kind: "clear", allOfProcess: true, ids: [], messageIds: [] });
  });

  it("splits long lists into chunks of maxIdsPerCall; a target resolves when all its chunks succeeded", async () => {
    const r = await setup({}, { maxIdsPerCall: 10 });
    const got = await fetchHeld(r, 25);
    await r.acks.clear({ processId: got.process_id!, ids: got.events.map((e) => Number(e.ID)) });
    should(r.notices.map((n) => n.ids.length)).eql([10, 10, 5]);
    should(r.sandbox.stats().queue.total).equal(0);
    should(r.sandbox.stats().requests.byMethod.batch).equal(1);
  });

  it("acks of several processes due at once share one batch request", async () => {
    const r = await setup();
    const a = await fetchHeld(r, 3);
    const b = await fetchHeld(r, 3);
    should(a.process_id).not.equal(b.process_id);
    const before = r.sandbox.stats().requests.total;
    await Promise.all(
      [a, b].flatMap((g) => g.events.map((e) => r.acks.clear({ processId: g.process_id!, ids: [Number(e.ID)] }))),
    );
    should(r.sandbox.stats().requests.total - before).equal(1);
    should(r.sandbox.stats().queue.total).equal(0);
    should(r.notices.map((n) => n.processId).sort()).eql([a.process_id, b.process_id].sort());
  });

  it("carries the auth_connector: records fetched with a connector are really deleted", async () => {
    const r = await setup();
    const got = await fetchHeld(r, 3, "crm_sync");
    // Without the connector the portal matches nothing and still answers true: the records stay held.
    await r.api.clear({ process_id: got.process_id!, id: got.events.map((e) => Number(e.ID)) });
    should(r.sandbox.records()).have.length(3);
    await Promise.all(
      got.events.map((e) =>
        r.acks.clear({ processId: got.process_id!, authConnector: "crm_sync", ids: [Number(e.ID)] }),
      ),
    );
    should(r.sandbox.records()).have.length(0);
    should(r.notices[0].authConnector).equal("crm_sync");
  });

  it("keeps targets of different connectors in different calls", async () => {
    const r = await setup();
    const plain = await fetchHeld(r, 2);
    const conn = await fetchHeld(r, 2, "x1");
    await Promise.all([
      r.acks.clear({ processId: plain.process_id!, ids: plain.events.map((e) => Number(e.ID)) }),
      r.acks.clear({ processId: conn.process_id!, authConnector: "x1", ids: conn.events.map((e) => Number(e.ID)) }),
    ]);
    should(r.sandbox.records()).have.length(0);
    should(r.notices.map((n) => n.authConnector).sort()).eql(["", "x1"]);
  });

  it("marks records with event.offline.error (coalesced), they become ERROR=1 without a process", async () => {
    const r = await setup();
    const got = await fetchHeld(r, 4);
    await Promise.all(
      got.events.slice(0, 3).map((e) => r.acks.error({ processId: got.process_id!, messageIds: [e.MESSAGE_ID] })),
    );
    should(r.sandbox.stats().requests.byMethod["event.offline.error"]).equal(1);
    const marked = r.sandbox.records().filter((rec) => rec.ERROR === "1");
    should(marked).have.length(3);
    should(marked.every((rec) => rec.PROCESS_ID === null)).be.true();
    should(r.notices[0]).match({ kind: "error", processId: got.process_id, allOfProcess: false });
  });

  it("take() hands queued acks to a batch that also carries a get; settle() resolves them and emits acked", async () => {
    const r = await setup({}, { flushDelayMs: 1000 });
    const got = await fetchHeld(r, 5);
    r.sandbox.addEvents(5);
    const waiting = got.events.map((e) => r.acks.clear({ processId: got.process_id!, ids: [Number(e.ID)] }));
    const taken = r.acks.take();
    should(taken).be.ok();
    should(r.acks.pending()).equal(0);
    should(r.acks.take()).be.undefined();
    const commands = { ...taken!.commands, next: r.api.getCommand({ clear: 0, limit: 50 }) };
    should(Object.values(taken!.commands).map((c) => c.method)).eql(["event.offline.clear"]);
    const before = r.sandbox.stats().requests.total;
    const outcome = await r.client.batch(commands);
    taken!.settle(outcome);
    await Promise.all(waiting);
    should(r.sandbox.stats().requests.total - before).equal(1);
    should(r.notices).have.length(1);
    should((outcome.result.next as { events: unknown[] }).events).have.length(5);
    should(r.sandbox.records().every((rec) => !got.events.some((e) => e.ID === rec.ID))).be.true();
  });

  it("settle(Error) rejects the taken targets; a batch command error rejects only its targets", async () => {
    const r = await setup({}, { flushDelayMs: 1000 });
    const failing = r.acks.clear({ processId: "a".repeat(32), ids: [1] });
    const taken = r.acks.take()!;
    taken.settle(new Error("socket hang up"));
    should((await rejection(failing)).message).match(/socket hang up/);

    const one = r.acks.clear({ processId: "b".repeat(32), ids: [1] });
    const two = r.acks.clear({ processId: "c".repeat(32), ids: [2] });
    const t2 = r.acks.take()!;
    const [k1, k2] = Object.keys(t2.commands);
    t2.settle({
      result: { [k2]: true },
      errors: { [k1]: new Bitrix24Error({ code: "ACCESS_DENIED", method: "event.offline.clear" }) },
      total: {},
      next: {},
      requests: 1,
    });
    should((await rejection(one)).code).equal("ACCESS_DENIED");
    await two;
    should(r.notices.map((n) => n.processId)).eql(["c".repeat(32)]);
  });

  it("a failed call rejects every target it carried with the portal's error", async () => {
    const r = await setup();
    const got = await fetchHeld(r, 3);
    r.sandbox.setFaults({ errorRate: 1, errorCode: "ACCESS_DENIED", methods: ["event.offline.clear"] });
    const results = await Promise.allSettled(
      got.events.map((e) => r.acks.clear({ processId: got.process_id!, ids: [Number(e.ID)] })),
    );
    should(results.map((x) => x.status)).eql(["rejected", "rejected", "rejected"]);
    should((results[0] as PromiseRejectedResult).reason.code).equal("ACCESS_DENIED");
    should(r.notices).have.length(0);
    should(r.sandbox.records()).have.length(3);
  });

  it("works when the portal refuses offline methods inside a batch (single calls instead)", async () => {
    const r = await setup({ batchAllowsOffline: false });
    const a = await fetchHeld(r, 2);
    const b = await fetchHeld(r, 2);
    await Promise.all(
      [a, b].flatMap((g) => g.events.map((e) => r.acks.clear({ processId: g.process_id!, ids: [Number(e.ID)] }))),
    );
    should(r.sandbox.records()).have.length(0);
    should(r.client.batchRefusesOffline).be.true();
    await Promise.all(
      [1, 2].map(async () => {
        const g = await fetchHeld(r, 1);
        await r.acks.clear({ processId: g.process_id!, ids: [Number(g.events[0].ID)] });
      }),
    );
    should(r.sandbox.records()).have.length(0);
  });

  it("close() flushes what is queued, then refuses new targets with CLOSED", async () => {
    const r = await setup({}, { flushDelayMs: 60_000 });
    const got = await fetchHeld(r, 4);
    const waiting = got.events.map((e) => r.acks.clear({ processId: got.process_id!, ids: [Number(e.ID)] }));
    await r.acks.close();
    await Promise.all(waiting);
    should(r.sandbox.records()).have.length(0);
    should((await rejection(r.acks.clear({ processId: got.process_id!, ids: [1] }))).code).equal("CLOSED");
    should(r.acks.take()).be.undefined();
  });

  it("close() still sends targets handed over in the same turn (nodes closing in one deploy loop)", async () => {
    const r = await setup({}, { flushDelayMs: 60_000 });
    const got = await fetchHeld(r, 2);
    const closed = r.acks.close();
    const late = r.acks.clear({ processId: got.process_id!, ids: got.events.map((e) => Number(e.ID)) });
    await closed;
    await late;
    should(r.sandbox.records()).have.length(0);
    should((await rejection(r.acks.clear({ processId: got.process_id!, ids: [1] }))).code).equal("CLOSED");
  });

  it("flush() sends at once without waiting for the timer", async () => {
    const r = await setup({}, { flushDelayMs: 60_000 });
    const got = await fetchHeld(r, 2);
    const waiting = r.acks.clear({ processId: got.process_id!, ids: got.events.map((e) => Number(e.ID)) });
    await r.acks.flush();
    await waiting;
    should(r.sandbox.records()).have.length(0);
  });
});

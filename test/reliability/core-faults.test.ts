import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import { Bitrix24Client } from "../../src/core/client/client";
import { OfflineEventsApi } from "../../src/core/queue/offline-api";
import type { Bitrix24Error } from "../../src/core/rest/errors";
import { FileTokenStore } from "../../src/core/state/token-store";
import { type Faults, type Sandbox, startSandbox } from "../../src/sandbox";
import { type CoreRig, type CoreRigOptions, coreRig, FAST_RETRY } from "./core-rig";
import { FaultCounter, record, sleep } from "./ledger";

/**
 * Faults from the sandbox against the core path the get/clear/error nodes run (client, ack queue, consumer):
 * every scenario counts events created, delivered, acked and lost. Ack mode must lose none.
 */
describe("reliability: faults against the core client and consumer", function () {
  this.timeout(30000);
  let rig: CoreRig | undefined;

  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  /** Small batches (limit 10) so a drain takes many requests and the faults hit often. */
  async function drainUnder(scenario: string, faults: Faults, events: number, options: CoreRigOptions = {}) {
    rig = await coreRig({
      ...options,
      sandbox: { events, ...options.sandbox },
      consumer: { limit: 10, ...options.consumer },
    });
    rig.sandbox.setFaults(faults);
    await rig.drainUntilEmpty(20000);
    const lost = rig.book.lostIds(rig.sandbox);
    record({
      area: "core",
      scenario,
      faults: rig.counter.faults,
      created: rig.book.created.size,
      delivered: rig.book.deliveries,
      duplicates: rig.book.duplicates,
      acked: rig.book.acks,
      lost: lost.length,
    });
    if (lost.length > 0) {
      const seen = lost.map((id) => `${id}: delivered ${rig?.book.delivered.get(id) ?? 0}x`);
      const failed = rig.failures.map((e) => `${e.method} ${e.code} ${e.description}`);
      throw new Error(`lost ${lost.length}: ${seen.join(", ")}; failures: ${failed.join(" | ")}`);
    }
    should(rig.book.undelivered()).eql([]);
    should(rig.sandbox.stats().queue.total).equal(0);
    return rig;
  }

  it("503 QUERY_LIMIT_EXCEEDED storm (60% of calls): backs off, then drains everything", async () => {
    const r = await drainUnder(
      "503 QUERY_LIMIT_EXCEEDED storm 60%",
      { errorRate: 0.6, errorCode: "QUERY_LIMIT_EXCEEDED" },
      400,
    );
    should(r.counter.faults).be.above(10);
  });

  it("OVERLOAD_LIMIT bursts (40%): backs off, then drains everything", async () => {
    const r = await drainUnder("503 OVERLOAD_LIMIT 40%", { errorRate: 0.4, errorCode: "OVERLOAD_LIMIT" }, 300);
    should(r.counter.faults).be.above(5);
  });

  it("429 (execution-time budget spent, 40%): backs off, then drains everything", async () => {
    const r = await drainUnder(
      "429 OPERATION_TIME_LIMIT 40%",
      { errorRate: 0.4, errorCode: "OPERATION_TIME_LIMIT" },
      300,
    );
    should(r.counter.faults).be.above(5);
  });

  it("5xx bursts (INTERNAL_SERVER_ERROR 40%, before the portal ran the call): drains everything", async () => {
    const r = await drainUnder("500 INTERNAL_SERVER_ERROR 40%", { errorRate: 0.4 }, 300);
    should(r.counter.faults).be.above(5);
  });

  it("the portal's own bucket (burst 5, 10/s) shared with another instance (client limiter 20/s): 503s, then a full drain", async () => {
    // Two instances that each believe they may send 20/s: the portal's bucket answers 503 and each client's
    // bucket is penalised (filled) on every 503, so they slow down to what the portal takes.
    rig = await coreRig({
      sandbox: { events: 300, rateLimit: { burst: 5, perSecond: 10 } },
      client: { rateLimit: { perSecond: 20, burst: 10 } },
      consumer: { limit: 20 },
    });
    await rig.drainUntilEmpty(20000, 100);
    const lost = rig.book.lostIds(rig.sandbox);
    record({
      area: "core",
      scenario: "portal bucket 5/10 per s vs client 10/20",
      faults: rig.counter.faults,
      created: rig.book.created.size,
      delivered: rig.book.deliveries,
      duplicates: rig.book.duplicates,
      acked: rig.book.acks,
      lost: lost.length,
    });
    should(lost).eql([]);
    should(rig.book.undelivered()).eql([]);
    should(rig.sandbox.stats().requests.rejected503).be.above(0);
  });

  it("connection dropped BEFORE the portal applied get/clear/batch (30%): no loss", async () => {
    const r = await drainUnder(
      "drop before get/clear/batch 30%",
      { dropBeforeRate: 0.3, methods: ["event.offline.get", "event.offline.clear", "batch"] },
      300,
    );
    should(r.counter.faults).be.above(3);
  });

  it("connection dropped AFTER the portal applied get/clear/batch (30%): no loss, orphans swept, duplicates counted", async () => {
    const r = await drainUnder(
      "drop after get/clear/batch 30%",
      { dropAfterRate: 0.3, methods: ["event.offline.get", "event.offline.clear", "batch"] },
      300,
    );
    should(r.counter.faults).be.above(3);
  });

  it("drops before and after event.offline.error (and batches carrying it): marked events stay as error records", async () => {
    rig = await coreRig({ sandbox: { events: 200 }, markEvery: 4, consumer: { limit: 10 } });
    rig.sandbox.setFaults({
      dropBeforeRate: 0.2,
      dropAfterRate: 0.3,
      methods: ["event.offline.error", "event.offline.clear", "batch"],
    });
    await rig.drainUntilEmpty(20000);
    const records = rig.sandbox.records();
    const errorIds = new Set(records.filter((x) => x.ERROR === "1").map((x) => x.MESSAGE_ID));
    should(records.every((x) => x.ERROR === "1" && x.PROCESS_ID === null)).be.true();
    // Every event the flow marked is an error record now; every other one was cleared after an ack.
    for (const m of rig.marked) should(errorIds.has(m)).be.true();
    const lost = rig.book.lostIds(rig.sandbox);
    record({
      area: "core",
      scenario: "drop before/after error+clear",
      faults: rig.counter.faults,
      created: rig.book.created.size,
      delivered: rig.book.deliveries,
      duplicates: rig.book.duplicates,
      acked: rig.book.acks + errorIds.size,
      lost: lost.length,
    });
    should(lost).eql([]);
    should(rig.book.requested.size).equal(200);
  });

  it("everything at once (503, 5xx, drops before and after) on a batch-refusing portal: no loss", async () => {
    await drainUnder(
      "mixed faults, no offline batch",
      { errorRate: 0.2, errorCode: "QUERY_LIMIT_EXCEEDED", dropBeforeRate: 0.1, dropAfterRate: 0.1 },
      250,
      { sandbox: { batchAllowsOffline: false } },
    );
  });

  it("auto mode (clear=1) under drops after the portal ran the get: every possible loss is reported, never silent", async () => {
    rig = await coreRig({ sandbox: { events: 200 }, consumer: { mode: "auto", limit: 10, orphanSweep: false } });
    rig.sandbox.setFaults({ dropAfterRate: 0.4, methods: ["event.offline.get"] });
    const end = Date.now() + 15000;
    while (rig.sandbox.stats().queue.total > 0 && Date.now() < end) {
      await rig.consumer.trigger().catch((err: Bitrix24Error) => rig?.failures.push(err));
    }
    const mayBeLost = rig.failures.filter((e) => e.code === "EVENTS_MAY_BE_LOST");
    const lost = rig.book.lostIds(rig.sandbox);
    record({
      area: "core",
      scenario: "auto mode, drop after get 40%",
      faults: rig.counter.faults,
      created: rig.book.created.size,
      delivered: rig.book.deliveries,
      acked: rig.book.acks,
      lost: lost.length,
      reportedLost: mayBeLost.length * 10,
    });
    should(rig.sandbox.stats().queue.total).equal(0);
    should(mayBeLost.length).be.above(0);
    should(lost.length).be.belowOrEqual(mayBeLost.length * 10);
    should(lost.length).be.above(0); // the portal really deleted them: auto mode is at-most-once
    for (const e of mayBeLost) should(e.description).match(/ack mode/);
  });

  describe("tokens", () => {
    let sandbox: Sandbox;
    let dir: string;
    const clients: Bitrix24Client[] = [];

    beforeEach(async () => {
      sandbox = await startSandbox({ rateLimit: false });
      dir = await fs.mkdtemp(join(tmpdir(), "b24-rel-tok-"));
    });

    afterEach(async () => {
      for (const c of clients.splice(0)) c.close();
      await sandbox.close();
      await fs.rm(dir, { recursive: true, force: true });
    });

    /** A client as the portal node builds it: deployed credentials + the file token store in `dir`. */
    function client(options: { store?: boolean; deployed?: { accessToken: string; refreshToken: string } } = {}) {
      const c = sandbox.credentials;
      const made = new Bitrix24Client({
        portalUrl: sandbox.url,
        auth: {
          type: "oauth",
          clientId: c.clientId,
          clientSecret: c.clientSecret,
          accessToken: options.deployed?.accessToken ?? c.accessToken,
          refreshToken: options.deployed?.refreshToken ?? c.refreshToken,
          oauthServer: sandbox.url,
        },
        rateLimit: false,
        retry: FAST_RETRY,
        tokenStore: options.store === false ? undefined : new FileTokenStore(dir),
      });
      clients.push(made);
      return made;
    }

    it("access token expiring with 50 calls in flight: exactly one refresh, all 50 succeed, no event lost", async () => {
      sandbox.addEvents(100);
      const c = client();
      const api = new OfflineEventsApi(c);
      const counter = new FaultCounter().watch(c);
      sandbox.setFaults({ latencyMs: 150, methods: ["event.offline.get"] });
      const calls = Array.from({ length: 50 }, () => api.get({ clear: 0, limit: 2 }));
      await sleep(50); // all 50 are on the wire, waiting out the latency
      sandbox.expireTokens();
      const results = await Promise.all(calls);
      sandbox.setFaults({});
      should(counter.tokenRequests).equal(1);
      const ids = results.flatMap((r) => r.events.map((e) => Number(e.ID)));
      should(new Set(ids).size).equal(100);
      for (const r of results) await api.clear({ process_id: r.process_id!, id: r.events.map((e) => Number(e.ID)) });
      should(sandbox.stats().queue.total).equal(0);
      record({
        area: "core",
        scenario: "token expired, 50 calls in flight",
        faults: counter.faults,
        created: 100,
        delivered: ids.length,
        acked: ids.length,
      });
      counter.stop();
    });

    it("refresh token rotated, then a restart with the ORIGINAL deployed credentials: the persisted token works", async () => {
      const first = client();
      const counter1 = new FaultCounter().watch(first);
      sandbox.expireTokens();
      await new OfflineEventsApi(first).list();
      should(counter1.tokenRequests).equal(1); // rotated: the deployed refresh token is spent now
      first.close();

      // Restart: same user directory, the credentials as deployed (Node-RED never learns rotated tokens).
      const second = client();
      const counter2 = new FaultCounter().watch(second);
      await new OfflineEventsApi(second).list();
      should(counter2.tokenRequests).equal(0); // the file's access token is still valid
      sandbox.expireTokens();
      await new OfflineEventsApi(second).list();
      should(counter2.tokenRequests).equal(1); // the file's refresh token is the live one

      // Without the file the deployed refresh token would be dead: that is what persistence saves us from.
      const amnesiac = client({ store: false });
      const err = await new OfflineEventsApi(amnesiac).list().then(
        () => undefined,
        (e: Bitrix24Error) => e,
      );
      should(err?.code).equal("invalid_grant");
      const mode = (await fs.stat(join(dir, (await fs.readdir(dir)).find((f) => f.endsWith(".json"))!))).mode & 0o777;
      should(mode).equal(0o600);
    });

    it("a revoked refresh token: a clear 're-authorise' error, and no hammering of the OAuth server", async () => {
      const c = client();
      const api = new OfflineEventsApi(c);
      const counter = new FaultCounter().watch(c);
      sandbox.revokeRefreshTokens();
      sandbox.expireTokens();
      const errors: Bitrix24Error[] = [];
      const end = Date.now() + 1000;
      while (Date.now() < end) {
        await api.list().catch((e: Bitrix24Error) => errors.push(e));
        await sleep(10);
      }
      should(errors.length).be.above(20);
      should(errors.every((e) => e.code === "invalid_grant" && /re-authorise/.test(e.description))).be.true();
      should(counter.tokenRequests).equal(1);
    });
  });

  describe("slow portal", () => {
    let sandbox: Sandbox;
    const clients: Bitrix24Client[] = [];

    beforeEach(async () => {
      sandbox = await startSandbox({ rateLimit: false, events: 10 });
    });

    afterEach(async () => {
      for (const c of clients.splice(0)) c.close();
      await sandbox.close();
    });

    function client(timeoutMs: number, maxAttempts = 1) {
      const c = sandbox.credentials;
      const made = new Bitrix24Client({
        portalUrl: sandbox.url,
        auth: { type: "oauth", ...c, oauthServer: sandbox.url },
        rateLimit: false,
        timeoutMs,
        retry: { ...FAST_RETRY, maxAttempts },
      });
      clients.push(made);
      return made;
    }

    it("honours the timeout: a 3 s portal with timeoutMs 250 fails with TIMEOUT in ~250 ms per attempt", async () => {
      sandbox.setFaults({ latencyMs: 3000 });
      const api = new OfflineEventsApi(client(250, 2));
      const started = Date.now();
      const err = await api.get({ clear: 0 }).then(
        () => undefined,
        (e: Bitrix24Error) => e,
      );
      const took = Date.now() - started;
      should(err?.code).equal("TIMEOUT");
      should(took).be.within(450, 1500);
      // The lossy get is not retried after a timeout: it may have run. Nothing was lost here (clear=0 held it).
      const lossy = await api.get({}).then(
        () => undefined,
        (e: Bitrix24Error) => e,
      );
      should(lossy?.code).equal("EVENTS_MAY_BE_LOST");
      record({ area: "core", scenario: "slow portal 3 s, timeout 250 ms", faults: 3 });
    });

    it("close() during a call: the call ends at once with CLOSED, later calls fail without HTTP", async () => {
      sandbox.setFaults({ latencyMs: 5000 });
      const c = client(30000, 6);
      const api = new OfflineEventsApi(c);
      const call = api.get({ clear: 0 }).then(
        () => undefined,
        (e: Bitrix24Error) => e,
      );
      await sleep(50);
      const started = Date.now();
      c.close();
      const err = await call;
      should(err?.code).equal("CLOSED");
      should(Date.now() - started).be.below(200);
      const sent = sandbox.stats().requests.total;
      const later = await api.list().then(
        () => undefined,
        (e: Bitrix24Error) => e,
      );
      should(later?.code).equal("CLOSED");
      should(sandbox.stats().requests.total).equal(sent);
    });
  });
});

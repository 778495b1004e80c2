import { promises as fs, readFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import { AckQueue } from "../../src/core/acks/ack-queue";
import type { Bitrix24Client } from "../../src/core/client/client";
import {
  type ConsumerState,
  type ConsumerWarning,
  type DeliveryGroup,
  type DrainSummary,
  NO_EXTENDED_MODE,
  OfflineConsumer,
  type OfflineConsumerOptions,
} from "../../src/core/consumer/offline-consumer";
import { OfflineEventsApi } from "../../src/core/queue/offline-api";
import type { Bitrix24Error } from "../../src/core/rest/errors";
import { queueKeyDigest } from "../../src/core/state/instance-registry";
import { journalFileName } from "../../src/core/state/process-journal";
import { type Sandbox, type SandboxOptions, startSandbox } from "../../src/sandbox";
import { consumerOptions } from "../kit/consumer";
import { sandboxClient } from "../kit/sandbox-client";
import { sleep, until } from "../wait";

interface Rig {
  sandbox: Sandbox;
  client: Bitrix24Client;
  api: OfflineEventsApi;
  acks: AckQueue;
  stateDir: string;
  consumers: OfflineConsumer[];
  make(options?: Partial<OfflineConsumerOptions>): Harness;
}

interface Harness {
  consumer: OfflineConsumer;
  delivered: DeliveryGroup[];
  dead: DeliveryGroup[];
  drained: DrainSummary[];
  states: ConsumerState[];
  failures: Bitrix24Error[];
  warnings: ConsumerWarning[];
  /** Acks every delivered event the way a clear node would: in a later turn, through the ack queue. */
  autoAck(): void;
}

function count(groups: DeliveryGroup[]): number {
  return groups.reduce((n, g) => n + g.deliveries.length, 0);
}

describe("offline consumer (against the sandbox)", function () {
  this.timeout(15000);
  let rig: Rig;

  async function setup(sandboxOptions: SandboxOptions = {}): Promise<Rig> {
    const sandbox = await startSandbox({ rateLimit: false, ...sandboxOptions });
    const c = sandbox.credentials;
    const client = sandboxClient(sandbox, {
      retry: { maxAttempts: 1 },
    });
    const api = new OfflineEventsApi(client);
    const acks = new AckQueue(api);
    const stateDir = await fs.mkdtemp(join(tmpdir(), "b24-consumer-"));
    const consumers: OfflineConsumer[] = [];
    const make = (options: Partial<OfflineConsumerOptions> = {}): Harness => {
      const consumer = new OfflineConsumer(api, acks, consumerOptions(client, c.clientId, stateDir, options));
      consumers.push(consumer);
      const h: Harness = {
        consumer,
        delivered: [],
        dead: [],
        drained: [],
        states: [],
        failures: [],
        warnings: [],
        autoAck() {
          consumer.on("deliver", (group) => {
            setImmediate(() => {
              for (const d of group.deliveries) {
                acks
                  .clear({ processId: group.processId!, authConnector: group.authConnector, ids: [d.id] })
                  .catch(() => undefined);
              }
            });
          });
        },
      };
      consumer.on("deliver", (g) => h.delivered.push(g));
      consumer.on("dead-letter", (g) => h.dead.push(g));
      consumer.on("drained", (s) => h.drained.push(s));
      consumer.on("state", (s) => h.states.push(s));
      consumer.on("failure", (e) => h.failures.push(e));
      consumer.on("warning", (w) => h.warnings.push(w));
      return h;
    };
    return { sandbox, client, api, acks, stateDir, consumers, make };
  }

  afterEach(async () => {
    if (!rig) return;
    for (const c of rig.consumers) await c.close();
    await rig.acks.close().catch(() => undefined);
    rig.client.close();
    await rig.sandbox.close();
    await fs.rm(rig.stateDir, { recursive: true, force: true });
  });

  it("ack mode drains until empty, acks delete the events, and the summary fires once", async () => {
    rig = await setup({ events: 120 });
    const h = rig.make();
    h.autoAck();
    const summary = await h.consumer.trigger();
    should(summary.events).equal(120);
    should(summary.empty).be.true();
    should(h.drained).have.length(1);
    should(h.drained[0].events).equal(120);
    should(
      h.delivered.every((g) => g.processId !== null && g.deliveries.every((d) => d.deliveryCount === 1)),
    ).be.true();
    await until(() => h.consumer.state.pending === 0);
    await rig.acks.flush();
    should(rig.sandbox.stats().queue.total).equal(0);
    should(h.consumer.processIds()).eql([]);
  });

  it("acks ride along with the next get: 500 events at limit 50 take ~11 requests, not 20", async () => {
    rig = await setup({ events: 500 });
    const h = rig.make();
    h.autoAck();
    const before = rig.sandbox.stats().requests.total;
    const summary = await h.consumer.trigger();
    await until(() => h.consumer.state.pending === 0);
    const stats = rig.sandbox.stats();
    should(summary.events).equal(500);
    should(stats.queue.total).equal(0);
    // 1 feature.get + 10 full gets + 1 empty get, the acks inside those batches.
    should(stats.requests.total - before).be.belowOrEqual(13);
    should(stats.requests.byMethod["event.offline.clear"] ?? 0).be.belowOrEqual(1);
  });

  it("prefetch puts several gets in one batch request", async () => {
    rig = await setup({ events: 300 });
    const h = rig.make({ prefetch: 3, limit: 50 });
    h.autoAck();
    const summary = await h.consumer.trigger();
    should(summary.events).equal(300);
    // 300 events / (3 × 50) per request = 2 full requests + 1 that finds the queue empty (+ feature.get).
    should(summary.requests).be.belowOrEqual(4);
    should(rig.sandbox.stats().requests.batches).be.aboveOrEqual(2);
  });

  it("auto mode fetches with clear=1: no process id, nothing held, at-most-once", async () => {
    rig = await setup({ events: 70 });
    const h = rig.make({ mode: "auto" });
    const summary = await h.consumer.trigger();
    should(summary.events).equal(70);
    should(h.delivered.every((g) => g.processId === null)).be.true();
    should(rig.sandbox.stats().queue.total).equal(0);
    should(h.consumer.state.pending).equal(0);
    should(rig.sandbox.stats().requests.byMethod["feature.get"] ?? 0).equal(0);
  });

  it("without drain, one trigger fetches one batch", async () => {
    rig = await setup({ events: 120 });
    const h = rig.make({ drain: false, limit: 50 });
    const summary = await h.consumer.trigger();
    should(summary.events).equal(50);
    should(summary.empty).be.false();
    should(h.drained).have.length(0);
  });

  it("backpressure: stops at maxInFlight unacked events and resumes when acks arrive", async () => {
    rig = await setup({ events: 200 });
    const h = rig.make({ maxInFlight: 60, limit: 50 });
    const run = h.consumer.trigger();
    await until(() => h.consumer.state.phase === "waiting");
    should(h.consumer.state.pending).equal(60); // 50 + a get clipped to the 10 that fit
    await sleep(30);
    should(count(h.delivered)).equal(60);
    // Ack the first group: room for more.
    const first = h.delivered[0];
    await rig.acks.clear({ processId: first.processId!, ids: first.deliveries.map((d) => d.id) });
    await until(() => count(h.delivered) > 60);
    h.autoAck();
    for (const g of h.delivered.slice(1)) {
      await rig.acks.clear({ processId: g.processId!, ids: g.deliveries.map((d) => d.id) });
    }
    const summary = await run;
    should(summary.events).equal(200);
    should(h.states.some((s) => s.phase === "waiting")).be.true();
  });

  it("triggers during a running drain coalesce into one follow-up drain", async () => {
    rig = await setup({ events: 60 });
    rig.sandbox.setFaults({ latencyMs: 30 });
    const h = rig.make({ mode: "auto", limit: 50 });
    const first = h.consumer.trigger();
    const more = [h.consumer.trigger(), h.consumer.trigger(), h.consumer.trigger()];
    should(more[0]).equal(more[1]);
    const [a, b] = await Promise.all([first, more[2]]);
    should(a.events + b.events).equal(60);
    should(h.drained).have.length(2); // the drain and ONE follow-up
  });

  it("redelivers unacked events after ackTimeout with deliveryCount persisted before emitting", async () => {
    rig = await setup({ events: 5 });
    const h = rig.make({ ackTimeoutMs: 150, maxDeliveries: 3 });
    const journalFile = join(
      rig.stateDir,
      journalFileName({
        portalHost: rig.client.portalHost,
        clientId: rig.sandbox.credentials.clientId,
        authConnector: "",
        error: 0,
      }),
    );
    const countsOnDiskAtEmit: number[] = [];
    h.consumer.on("deliver", (group) => {
      if (!group.deliveries[0].redelivered) return;
      // The journal is a log of whole states: the last line is the one on disk now.
      const data = JSON.parse(readFileSync(journalFile, "utf8").trimEnd().split("\n").pop() ?? "");
      countsOnDiskAtEmit.push(data.processes[0].pending[0].deliveryCount);
    });
    await h.consumer.trigger();
    should(h.delivered).have.length(1);
    await until(() => h.delivered.length >= 2);
    const again = h.delivered[1];
    should(again.processId).equal(h.delivered[0].processId);
    should(again.deliveries).have.length(5);
    should(again.deliveries.every((d) => d.redelivered && d.deliveryCount === 2)).be.true();
    should(countsOnDiskAtEmit[0]).equal(2);
    should(h.consumer.state.pending).equal(5);
  });

  it("after maxDeliveries marks error=0 records with event.offline.error; they come back with error=1", async () => {
    rig = await setup({ events: 3 });
    const h = rig.make({ ackTimeoutMs: 80, maxDeliveries: 2 });
    await h.consumer.trigger();
    await until(() => rig.sandbox.records().every((r) => r.ERROR === "1"), 5000);
    should(h.delivered).have.length(2); // first delivery + one redelivery
    should(rig.sandbox.records().every((r) => r.PROCESS_ID === null)).be.true();
    should(h.warnings.some((w) => w.code === "MARKED_AS_ERROR")).be.true();
    await until(() => h.consumer.state.pending === 0);
    should(h.consumer.processIds()).eql([]);
  });

  it("error=1 records that exhaust their deliveries leave on the dead-letter output and stay held", async () => {
    rig = await setup({ events: 2 });
    // Make them error records first.
    const got = await rig.api.get({ clear: 0, limit: 10 });
    await rig.api.error({ process_id: got.process_id!, message_id: got.events.map((e) => e.MESSAGE_ID) });
    const h = rig.make({ errorRecords: true, ackTimeoutMs: 80, maxDeliveries: 1 });
    await h.consumer.trigger();
    should(h.delivered[0].error).equal(1);
    await until(() => h.dead.length > 0);
    should(h.dead[0].deliveries).have.length(2);
    should(h.dead[0].deliveries[0].deliveryCount).equal(2);
    should(h.dead[0].error).equal(1);
    // Still held: the flow clears them once stored.
    should(rig.sandbox.records().every((r) => r.PROCESS_ID === h.dead[0].processId)).be.true();
    await rig.acks.clear({ processId: h.dead[0].processId!, ids: h.dead[0].deliveries.map((d) => d.id) });
    await until(() => h.consumer.state.pending === 0);
    should(rig.sandbox.stats().queue.total).equal(0);
  });

  it("restart: a new consumer with the same key re-selects the journal's processes first", async () => {
    rig = await setup({ events: 130 });
    const a = rig.make({ limit: 50, maxInFlight: 100 });
    const run = a.consumer.trigger();
    await until(() => a.consumer.state.phase === "waiting");
    await a.consumer.close(); // "crash" mid-drain with 100 unacked
    await run;
    should(rig.sandbox.stats().queue.held).equal(100);

    const b = rig.make({ limit: 50 });
    b.autoAck();
    const summary = await b.consumer.trigger();
    const recovered = b.delivered.filter((g) => g.deliveries[0].redelivered);
    should(count(recovered)).equal(100);
    should(recovered.every((g) => g.deliveries.every((d) => d.deliveryCount === 2))).be.true();
    // Recovered first, then the rest of the queue.
    should(b.delivered[0].deliveries[0].redelivered).be.true();
    should(summary.events).equal(130);
    await until(() => b.consumer.state.pending === 0);
    await rig.acks.flush();
    should(rig.sandbox.records().filter((r) => r.PROCESS_ID !== null)).eql([]);
    should(rig.sandbox.stats().queue.total).equal(0);
  });

  it("drops journal processes whose re-select returns nothing", async () => {
    rig = await setup({ events: 10 });
    const a = rig.make();
    await a.consumer.trigger();
    const [pid] = a.consumer.processIds();
    await a.consumer.close();
    await rig.api.clear({ process_id: pid, id: a.delivered[0].deliveries.map((d) => d.id) }); // acked elsewhere
    const b = rig.make();
    await b.consumer.trigger();
    should(b.delivered).have.length(0);
    should(b.consumer.processIds()).eql([]);
    await b.consumer.close();
    should(await fs.readdir(rig.stateDir)).not.containEql(
      journalFileName({
        portalHost: rig.client.portalHost,
        clientId: rig.sandbox.credentials.clientId,
        authConnector: "",
        error: 0,
      }),
    );
  });

  it("the orphan sweep adopts records held under a process id nobody here knows", async () => {
    rig = await setup({ events: 7 });
    const lost = await rig.api.get({ clear: 0, limit: 4 }); // a consumer that lost its journal
    const h = rig.make({ orphanSweep: true, orphanAgeMs: 0, limit: 50 });
    h.autoAck();
    await h.consumer.trigger();
    const adopted = h.delivered.find((g) => g.processId === lost.process_id);
    should(adopted).be.ok();
    should(adopted!.deliveries).have.length(4);
    should(adopted!.deliveries.every((d) => d.redelivered && d.deliveryCount === 2)).be.true();
    should(h.warnings.some((w) => w.code === "ORPHANS_ADOPTED")).be.true();
    await until(() => h.consumer.state.pending === 0);
    await rig.acks.flush();
    should(rig.sandbox.stats().queue.total).equal(0);
  });

  it("the orphan sweep waits orphanAgeMs before taking over a process when other consumers may drain the queue", async () => {
    rig = await setup({ events: 3 });
    await rig.api.get({ clear: 0, limit: 3 });
    const h = rig.make({ orphanSweep: true, orphanAgeMs: 60_000, externalConsumers: true });
    await h.consumer.trigger();
    should(h.delivered).have.length(0);
    should(rig.sandbox.stats().queue.held).equal(3);
  });

  it("never takes what a live neighbour on the same machine holds or may be fetching, takes what nobody can own", async () => {
    rig = await setup({ events: 12 });
    const theirs = await rig.api.get({ clear: 0, limit: 4 }); // in the neighbour's journal
    const lost = await rig.api.get({ clear: 0, limit: 4 }); // held by a get whose answer nobody journaled
    const key = {
      portalHost: rig.client.portalHost,
      clientId: rig.sandbox.credentials.clientId,
      authConnector: "",
      error: 0 as const,
    };
    // a live neighbour (its pid runs: our parent) with a journal naming "theirs" and a get in flight since now
    await fs.mkdir(join(rig.stateDir, "instances"), { recursive: true });
    const entry = {
      instanceId: "neighbour-1",
      pid: process.ppid,
      host: hostname(),
      startedAt: Date.now(),
      renewedAt: Date.now(),
      queues: [queueKeyDigest(key)],
    };
    await fs.writeFile(join(rig.stateDir, "instances", "neighbour-1.json"), JSON.stringify(entry));
    const journal = (fetching?: number) =>
      `${JSON.stringify({ version: 1, key, updatedAt: Date.now(), processes: [{ processId: theirs.process_id, size: 4, deliveredAt: Date.now(), pending: [] }], ...(fetching ? { fetching } : {}) })}\n`;
    const neighbourJournal = join(rig.stateDir, journalFileName(key, "neighbour-1"));
    await fs.writeFile(neighbourJournal, journal(Date.now() - 5));
    const h = rig.make({ orphanSweep: true, limit: 50 });
    h.autoAck();
    await h.consumer.trigger();
    // the neighbour's get in flight may have held "lost": not taken yet
    should(h.delivered.map((g) => g.processId)).not.containEql(lost.process_id);
    // its get answers (with another batch): "lost" cannot be its own any more, and is taken within a heartbeat
    await fs.writeFile(neighbourJournal, journal());
    await until(() => h.delivered.some((g) => g.processId === lost.process_id), 5000, "the orphan taken");
    should(h.delivered.map((g) => g.processId)).not.containEql(theirs.process_id);
    should(rig.sandbox.records().filter((r) => r.PROCESS_ID === theirs.process_id)).have.length(4);
  });

  it("refuses ack mode plainly when the portal lacks extended mode", async () => {
    rig = await setup({ events: 3, extendedMode: false });
    const h = rig.make();
    await should(h.consumer.trigger()).be.rejectedWith({ description: NO_EXTENDED_MODE });
    should(h.delivered).have.length(0);
    should(rig.sandbox.stats().queue.total).equal(3);
    await should(h.consumer.trigger()).be.rejectedWith({ description: NO_EXTENDED_MODE });
  });

  it("detects the missing extended mode from the license error when feature.get fails", async () => {
    rig = await setup({ events: 3, extendedMode: false });
    rig.sandbox.setFaults({ errorRate: 1, errorCode: "INTERNAL_SERVER_ERROR", methods: ["feature.get"] });
    const h = rig.make();
    await should(h.consumer.trigger()).be.rejectedWith({ code: "WRONG_LICENSE", description: NO_EXTENDED_MODE });
  });

  it("falls back to auto mode only when at-most-once is allowed", async () => {
    rig = await setup({ events: 3, extendedMode: false });
    const h = rig.make({ allowAtMostOnce: true });
    const summary = await h.consumer.trigger();
    should(summary.events).equal(3);
    should(h.consumer.mode).equal("auto");
    should(h.delivered[0].processId).be.null();
    should(h.warnings.map((w) => w.code)).containEql("AT_MOST_ONCE_FALLBACK");
    should(rig.sandbox.stats().queue.total).equal(0);
  });

  it("reselect(processId) re-emits a process's records with clear=0 and deletes nothing", async () => {
    rig = await setup({ events: 4 });
    const got = await rig.api.get({ clear: 0, limit: 4 });
    const h = rig.make();
    await h.consumer.reselect(got.process_id!);
    should(h.delivered).have.length(1);
    should(h.delivered[0].processId).equal(got.process_id);
    should(h.delivered[0].deliveries.every((d) => d.redelivered)).be.true();
    should(rig.sandbox.stats().queue.held).equal(4);
    should(h.consumer.state.pending).equal(4);
  });

  it("pause stops fetching and resume continues", async () => {
    rig = await setup({ events: 10 });
    const h = rig.make({ mode: "auto" });
    h.consumer.pause();
    const skipped = await h.consumer.trigger();
    should(skipped.stopped).be.true();
    should(h.delivered).have.length(0);
    should(h.consumer.state.phase).equal("paused");
    h.consumer.resume(); // a trigger arrived while paused: resume fetches
    await until(() => h.drained.length === 1);
    should(count(h.delivered)).equal(10);
  });

  it("close leaves no timers behind and keeps the journal for the next start", async () => {
    rig = await setup({ events: 5 });
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const h = rig.make({ ackTimeoutMs: 60_000, orphanSweep: true });
    await h.consumer.trigger();
    should(process.getActiveResourcesInfo().filter((r) => r === "Timeout").length).be.above(timersBefore);
    await h.consumer.close();
    should(process.getActiveResourcesInfo().filter((r) => r === "Timeout").length).equal(timersBefore);
    should(h.consumer.state.phase).equal("closed");
    const files = await fs.readdir(rig.stateDir);
    should(files.filter((f) => f.startsWith("journal-"))).have.length(1);
  });
});

import { spawn } from "node:child_process";
import { join } from "node:path";
import should from "should";
import { AckQueue } from "../../src/core/acks/ack-queue";
import type { Bitrix24Client } from "../../src/core/client/client";
import { OfflineConsumer } from "../../src/core/consumer/offline-consumer";
import { OfflineEventsApi } from "../../src/core/queue/offline-api";
import { Bitrix24Error } from "../../src/core/rest/errors";
import { PgDatabase } from "../../src/core/state/postgres/pg-database";
import { migrate, SCHEMA_VERSION } from "../../src/core/state/postgres/pg-migrations";
import { PgStateStores } from "../../src/core/state/postgres/pg-state";
import type { JournalKey, JournalProcess } from "../../src/core/state/state-seam";
import { tokenStoreKey } from "../../src/core/state/token-store";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { consumerOptions } from "../kit/consumer";
import { adminClient, canRestart, freshSchema, pgServer } from "../kit/postgres";
import { sandboxClient } from "../kit/sandbox-client";
import { storedTokens } from "../kit/tokens";
import { sleep, until } from "../wait";

/** The PostgreSQL implementation of the state seam, against a real server (test/kit/postgres.ts). */

const KEY: JournalKey = { portalHost: "example.bitrix24.com", clientId: "app", authConnector: "", error: 0 };

function held(id: string, deliveryCount: number): JournalProcess {
  return { processId: id, size: 2, deliveredAt: 1, pending: [{ id: 1, messageId: "m1", deliveryCount }] };
}

describe("PostgreSQL state", function () {
  this.timeout(30000);
  const opened: PgStateStores[] = [];
  async function stores(extra: Partial<ConstructorParameters<typeof PgStateStores>[0]> = {}, schema?: string) {
    const s = new PgStateStores({ ...(await freshSchema()), ...(schema ? { schema } : {}), retryMs: 2000, ...extra });
    opened.push(s);
    return s;
  }
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });
  /** The settings of an opened store, for a child process that joins the same schema. */
  async function freshSchemaOf(s: PgStateStores) {
    return { ...s.db.settings };
  }

  describe("migrations and errors", () => {
    it("two instances starting at once migrate the schema once (advisory lock), and again is a no-op", async () => {
      const a = await stores();
      const b = await stores({}, a.db.schema);
      await Promise.all([a.ready(), b.ready()]);
      const rows = await a.db.query<{ version: number }>(`SELECT version FROM ${a.db.table("schema_version")}`);
      should(rows.rows.map((r) => r.version).sort()).eql(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
      const client = await a.db.pool.connect();
      try {
        should(await migrate(client, a.db.schema)).equal(SCHEMA_VERSION);
      } finally {
        client.release();
      }
    });

    it("says what is wrong: wrong password, no such database, no rights, nobody listening", async () => {
      const base = await freshSchema({ retryMs: 500 });
      const failure = async (settings: typeof base): Promise<Bitrix24Error> => {
        const db = new PgDatabase(settings);
        try {
          await db.ensureReady();
        } catch (err) {
          return err as Bitrix24Error;
        } finally {
          await db.close();
        }
        throw new Error("connected");
      };
      const wrong = await failure({ ...base, password: "not-the-password" });
      should(wrong).be.instanceOf(Bitrix24Error);
      should(wrong.code).equal("STATE_STORE_ERROR");
      should(wrong.description).match(/wrong user or password/);
      should(wrong.description).not.containEql("not-the-password");
      should((await failure({ ...base, database: "no_such_db" })).description).match(/no such database/);
      should((await failure({ ...base, port: 1 })).description).match(/cannot be reached/);

      const admin = await adminClient();
      try {
        await admin.query("DROP ROLE IF EXISTS b24_norights");
        await admin.query("CREATE ROLE b24_norights LOGIN PASSWORD 'pw'");
        await admin.query(`REVOKE CREATE ON DATABASE ${base.database} FROM PUBLIC`);
        const noRights = await failure({ ...base, user: "b24_norights", password: "pw" });
        should(noRights.description).match(/no rights/);
      } finally {
        await admin.query("DROP ROLE IF EXISTS b24_norights").catch(() => undefined);
        await admin.end();
      }
    });
  });

  describe("token lineage", () => {
    it("one holder of the refresh lock across instances; a holder whose connection dies frees it at once", async () => {
      const a = await stores();
      const b = await stores({}, a.db.schema);
      let inside = 0;
      let most = 0;
      const work = (store: PgStateStores) =>
        store.tokens.withLock("k", async () => {
          inside++;
          most = Math.max(most, inside);
          await sleep(30);
          inside--;
        });
      await Promise.all([work(a), work(b), work(a), work(b)]);
      should(most).equal(1);

      // a holds the lock and its machine "dies": the database ends its session; b gets the lock without waiting
      // for any timeout of ours.
      let release!: () => void;
      const held = a.tokens.withLock("k", () => new Promise<void>((r) => (release = r)));
      await sleep(100);
      const admin = await adminClient();
      try {
        const holder = await admin.query<{ pid: number }>(
          "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
        );
        should(holder.rows.length).be.above(0);
        const started = Date.now();
        const bGot = b.tokens.withLock("k", async () => Date.now());
        await sleep(200);
        for (const row of holder.rows) await admin.query("SELECT pg_terminate_backend($1)", [row.pid]);
        const at = await bGot;
        should(at - started).be.below(3000);
      } finally {
        await admin.end();
        release();
        await held.catch(() => undefined);
      }
    });

    it("a lock holder dies mid-refresh (SIGKILL): the next instance takes the lock at once and refreshes", async () => {
      const sandbox = await startSandbox({ rateLimit: false, events: 0, tokenTtlSec: 1 });
      const b = await stores();
      const key = tokenStoreKey(new URL(sandbox.url).host, sandbox.credentials.clientId);
      const child = spawn(process.execPath, ["--import", "tsx", join(__dirname, "fixtures", "lock-holder.ts")], {
        env: { ...process.env, B24_PG_SETTINGS: JSON.stringify(await freshSchemaOf(b)), B24_LOCK_KEY: key },
        stdio: ["ignore", "pipe", "inherit"],
      });
      const client = sandboxClient(sandbox, { tokenStore: b.tokens });
      try {
        let out = "";
        child.stdout?.on("data", (chunk: Buffer) => {
          out += chunk.toString();
        });
        await until(() => out.includes("locked"), 15000, "the lock holder to say it holds the lock");
        should(out).containEql("locked");
        await sleep(1100); // the deployed access token is expired: the call below must refresh, under the lock
        const call = client.call("app.info");
        await sleep(300);
        should(sandbox.stats().oauth.refreshes).equal(0); // waiting for the holder
        const killedAt = Date.now();
        child.kill("SIGKILL");
        await call;
        should(Date.now() - killedAt).be.below(3000);
        should(sandbox.stats().oauth).eql({ refreshes: 1, invalidGrant: 0 });
        should((await b.tokens.load(key))?.refreshToken).not.equal(sandbox.credentials.refreshToken);
      } finally {
        child.kill("SIGKILL");
        client.close();
        await sandbox.close();
      }
    });

    it("compare-and-set: a save under a lock whose row changed meanwhile fails and keeps the newer tokens", async () => {
      const a = await stores();
      const b = await stores({}, a.db.schema);
      const t = (refreshToken: string) => storedTokens(`A-${refreshToken}`, refreshToken);
      await a.tokens.withLock("k", () => a.tokens.save("k", t("R1")));
      // b writes behind a's lock (as if a's lock connection had dropped and b had taken the lock).
      const error = await a.tokens
        .withLock("k", async () => {
          await b.tokens.save("k", t("R2"));
          await a.tokens.save("k", t("R3"));
        })
        .then(
          () => undefined,
          (err: unknown) => err as Bitrix24Error,
        );
      should(error?.code).equal("TOKEN_STORE_ERROR");
      should((await a.tokens.load("k"))?.refreshToken).equal("R2");
    });

    it("encrypted with the credential secret: the table holds no token, the other instance reads it", async () => {
      const a = await stores({ secret: "flow-secret" });
      const b = await stores({ secret: "flow-secret" }, a.db.schema);
      await a.tokens.withLock("k", () => a.tokens.save("k", storedTokens("A1", "R1")));
      const raw = await a.db.query<{ access_token: string; refresh_token: string }>(
        `SELECT access_token, refresh_token FROM ${a.db.table("tokens")}`,
      );
      should(raw.rows[0].access_token).startWith("enc1:");
      should(raw.rows[0].refresh_token).not.containEql("R1");
      should((await b.tokens.load("k"))?.refreshToken).equal("R1");
      const other = await stores({ secret: "another" }, a.db.schema);
      await should(other.tokens.load("k")).be.rejectedWith(/another credential secret/);
    });

    describe("two instances, one lineage (sandbox OAuth)", () => {
      let sandbox: Sandbox;
      const clients: Bitrix24Client[] = [];
      afterEach(async () => {
        for (const c of clients.splice(0)) c.close();
        await sandbox?.close();
      });

      it("access tokens expiring every second: 8 clients on 2 stores refresh one at a time, no token spent twice", async () => {
        sandbox = await startSandbox({ rateLimit: false, events: 0, tokenTtlSec: 1 });
        const a = await stores();
        const b = await stores({}, a.db.schema);
        for (let i = 0; i < 8; i++) clients.push(sandboxClient(sandbox, { tokenStore: (i % 2 ? a : b).tokens }));
        const deadline = Date.now() + 3500;
        while (Date.now() < deadline) {
          await Promise.all(clients.map((c) => c.call("app.info")));
          await sleep(150);
        }
        const { oauth } = sandbox.stats();
        should(oauth.invalidGrant).equal(0);
        // Tokens this short are always inside the session's 60 s refresh margin, so every round refreshes; what
        // matters is that no refresh token was ever offered twice.
        should(oauth.refreshes).be.above(1);
      });
    });
  });

  describe("held process ids under leases", () => {
    it("a live instance's process ids are never taken; a dead one's move once its lease ran out, counts kept", async () => {
      const a = await stores({ leaseMs: 1500, instanceId: "a-1" });
      const b = await stores({ leaseMs: 1500, instanceId: "b-1" }, a.db.schema);
      await a.instances.announce(KEY);
      await b.instances.announce(KEY);
      should((await b.instances.liveOthers(KEY)).map((i) => i.instanceId)).eql(["a-1"]);
      const sa = a.journals.open(KEY, a.instances);
      should((await sa.adopt()).processes).eql([]);
      await sa.beginFetch(1234);
      await sa.save([held("p1", 2), held("p2", 1)]);
      const sb = b.journals.open(KEY, b.instances);
      should((await sb.adopt()).processes).eql([]);
      await sleep(2500); // a renews every 500 ms: still its own
      should(await sb.abandoned()).be.false();
      should((await sb.adopt()).processes).eql([]);
      const peers = await sb.peers();
      should(peers.map((p) => [p.instanceId, [...p.processIds].sort(), p.fetching])).eql([["a-1", ["p1", "p2"], 1234]]);

      // a dies (stops renewing, never releases).
      a.instances.stop();
      const died = Date.now();
      let abandoned = false;
      while (!abandoned && Date.now() - died < 5000) {
        abandoned = await sb.abandoned();
        if (!abandoned) await sleep(100);
      }
      should(abandoned).be.true();
      should(Date.now() - died).be.below(1500 + 1000);
      should(await b.instances.isLive("a-1")).be.false();
      should(await sb.peers()).eql([]);
      const taken = await sb.adopt();
      should(taken.processes.map((p) => [p.processId, p.pending[0].deliveryCount]).sort()).eql([
        ["p1", 2],
        ["p2", 1],
      ]);
      await sb.release();
    });

    it("a released session's processes are free at once; save drops what the consumer no longer holds", async () => {
      const a = await stores();
      const sa = a.journals.open(KEY, a.instances);
      await sa.adopt();
      await sa.save([held("p1", 1), held("p2", 1)]);
      await sa.save([held("p2", 1)]);
      should([...sa.knownProcessIds()]).eql(["p2"]);
      await sa.release();
      const sb = a.journals.open(KEY, a.instances);
      should(await sb.abandoned()).be.true();
      should((await sb.adopt()).processes.map((p) => p.processId)).eql(["p2"]);
      await sb.release();
    });
  });

  describe("change snapshots (issue 21's interface)", () => {
    it("stage → commit advances; discard does not; an older read acked last never wins; namespaces apart; shared", async () => {
      const one = await stores();
      const two = await stores({}, one.db.schema);
      const a = await one.snapshots.open("ns-a");
      const b = await one.snapshots.open("ns-b");
      await a.stage([
        { ref: "p:1", key: "deal:1", snapshot: { fields: { STAGE_ID: "NEW" }, seq: 1 } },
        { ref: "p:2", key: "deal:1", snapshot: { fields: { STAGE_ID: "WON" }, seq: 2 } },
        { ref: "p:3", key: "deal:2", snapshot: { fields: { STAGE_ID: "LOSE" }, seq: 3 } },
        { ref: "q:1", key: "deal:3", snapshot: null },
      ]);
      should((await a.read(["deal:1"])).size).equal(0);
      should((await a.staged("p")).map((e) => e.ref)).eql(["p:1", "p:2", "p:3"]);
      await a.commit(["p:2"]);
      await a.commit(["p:1"]); // older read, acked last
      await a.discard(["p:3"]);
      should((await a.read(["deal:1"])).get("deal:1")?.fields).eql({ STAGE_ID: "WON" });
      should((await a.read(["deal:2"])).size).equal(0);
      should((await a.staged()).map((e) => e.ref)).eql(["q:1"]);
      should((await b.read(["deal:1"])).size).equal(0);
      // Another instance on the same schema sees the same history.
      const other = await two.snapshots.open("ns-a");
      should((await other.read(["deal:1"])).get("deal:1")).eql({ fields: { STAGE_ID: "WON" }, seq: 2 });
      await other.put([{ key: "deal:1", snapshot: null }]);
      should((await a.read(["deal:1"])).size).equal(0);
      should((await a.stats()).objects).equal(0);
      should((await a.stats()).staged).equal(1);
    });
  });

  describe("shared bucket", () => {
    it("two instances together stay within burst - 1 + rate × t", async () => {
      const a = await stores();
      const b = await stores({}, a.db.schema);
      const settings = { perSecond: 20, burst: 6 };
      const ga = a.bucket("portal", settings);
      const gb = b.bucket("portal", settings);
      const started = Date.now();
      const times: number[] = [];
      await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? ga : gb).acquire().then(() => times.push(Date.now() - started))),
      );
      times.sort((x, y) => x - y);
      // 40 requests, 5 at once, then 20/s: at least (40 - 5) / 20 s = 1.75 s.
      should(times[39]).be.aboveOrEqual(1700);
      for (let i = 0; i < times.length; i++) {
        // Within any prefix [0, t]: at most 5 + 20 t requests (+1 for timer granularity).
        should(i + 1).be.belowOrEqual(5 + Math.ceil((times[i] / 1000) * 20) + 1);
      }
    });
  });

  describe("faults", () => {
    it("the database restarts mid-drain: the consumer waits and goes on, every event cleared once", async function () {
      if (!(await canRestart())) this.skip(); // a server of one's own (PG_TEST_URL) is not ours to restart
      const sandbox = await startSandbox({ rateLimit: { perSecond: 10, burst: 5 }, events: 400 });
      const s = await stores({ retryMs: 30_000 });
      const client = sandboxClient(sandbox, { tokenStore: s.tokens, rateLimit: { perSecond: 10, burst: 5 } });
      const api = new OfflineEventsApi(client);
      const acks = new AckQueue(api);
      const consumer = new OfflineConsumer(
        api,
        acks,
        consumerOptions(client, sandbox.credentials.clientId, undefined, {
          journals: s.journals,
          registry: s.instances,
          limit: 20,
        }),
      );
      const seen: number[] = [];
      const failures: string[] = [];
      consumer.on("failure", (e) => failures.push(e.code));
      consumer.on("deliver", (group) => {
        for (const d of group.deliveries) {
          seen.push(d.id);
          acks.clear({ processId: group.processId!, authConnector: "", ids: [d.id] }).catch(() => undefined);
        }
      });
      try {
        const drained = consumer.trigger();
        await sleep(800);
        should(seen.length).be.above(0);
        should(sandbox.stats().queue.total).be.above(0);
        const server = await pgServer();
        await server.restart!(1500);
        await drained;
        for (let i = 0; i < 100 && sandbox.stats().queue.total > 0; i++) {
          await consumer.trigger();
          await sleep(50);
        }
        should(sandbox.stats().queue.total).equal(0);
        should(new Set(seen).size).equal(400);
        // The journal's writes during the restart were waited out, not failed.
        should(failures.filter((c) => c === "STATE_STORE_ERROR")).eql([]);
      } finally {
        await consumer.close();
        await acks.close().catch(() => undefined);
        client.close();
        await sandbox.close();
      }
    });
  });
});

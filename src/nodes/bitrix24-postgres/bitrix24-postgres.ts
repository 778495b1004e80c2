import type { Node, NodeAPI, NodeDef } from "node-red";
import { Bitrix24Error } from "../../core/rest/errors";
import { type SslMode, validSchema } from "../../core/state/postgres/pg-database";
import { DEFAULT_LEASE_MS } from "../../core/state/postgres/pg-journal-store";
import { acquirePgState, type PgStateOptions, type PgStateStores } from "../../core/state/postgres/pg-state";

/**
 * The `bitrix24-postgres` config node (DESIGN.md, property names): where the package's state lives when several
 * Node-RED instances on several machines drain one portal. A portal node whose `store` names it hands these
 * stores to its client and get nodes instead of the files in the user directory.
 */

export interface PostgresConfig extends NodeDef {
  host: string;
  port: string | number;
  database: string;
  ssl: string;
  schema: string;
  /** Seconds a held process id's lease lasts: how soon a dead instance's events move to a live one. */
  lease?: string | number;
  /** Encrypt the token columns with the flow's credential secret. */
  encrypt?: boolean;
}

export interface PostgresCredentials {
  user?: string;
  password?: string;
}

export interface PostgresNode extends Node<PostgresCredentials> {
  /** Undefined when the configuration is unusable; `configError` then says why. */
  settings?: PgStateOptions;
  configError?: Bitrix24Error;
  /** The last failure to connect or migrate (deploy-time check), undefined once the database answered. */
  lastError?: Bitrix24Error;
  /** host:port/database schema s, for messages (never the password). */
  where: string;
  /** The stores of this database and schema, shared in this process; call release when the user closes. */
  acquire(): { stores: PgStateStores; release: () => void };
}

const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * `${NAME}` in a value, as everywhere in Node-RED: the flow's or group's environment first, then the process's.
 * Node-RED substitutes whole-value references in properties itself; credentials and embedded references are ours.
 */
function withEnv(RED: NodeAPI, node: Node, value: unknown): string {
  const text = value === undefined || value === null ? "" : String(value);
  const util = RED.util as unknown as { getSetting?: (node: Node, name: string) => unknown };
  return text
    .replace(ENV_REFERENCE, (_all, name: string) => {
      const found = util.getSetting ? util.getSetting(node, name) : process.env[name];
      return found === undefined || found === null ? "" : String(found);
    })
    .trim();
}

/** The flow's credential secret, the same on every instance that runs the same flow file. */
function credentialSecret(RED: NodeAPI): string | undefined {
  const settings = RED.settings as unknown as { credentialSecret?: unknown; get?: (name: string) => unknown };
  if (typeof settings.credentialSecret === "string" && settings.credentialSecret) return settings.credentialSecret;
  try {
    const generated = settings.get?.("_credentialSecret");
    return typeof generated === "string" && generated ? generated : undefined;
  } catch {
    return undefined;
  }
}

export default function register(RED: NodeAPI): void {
  function Bitrix24PostgresNode(this: PostgresNode, config: PostgresConfig) {
    RED.nodes.createNode(this, config);
    const credentials = this.credentials ?? {};
    const host = withEnv(RED, this, config.host) || "localhost";
    const database = withEnv(RED, this, config.database);
    const port = Number(withEnv(RED, this, config.port) || 5432);
    const ssl = (["off", "require", "verify"].includes(config.ssl) ? config.ssl : "off") as SslMode;
    this.where = `${host}:${port}/${database}`;
    try {
      if (!database) {
        throw new Bitrix24Error({ code: "INVALID_CONFIG", description: RED._("bitrix24-postgres.errors.noDatabase") });
      }
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw new Bitrix24Error({ code: "INVALID_CONFIG", description: RED._("bitrix24-postgres.errors.port") });
      }
      const schema = validSchema(withEnv(RED, this, config.schema));
      const leaseSeconds = Number(withEnv(RED, this, config.lease));
      let secret: string | undefined;
      if (config.encrypt) {
        secret = credentialSecret(RED);
        if (!secret) {
          throw new Bitrix24Error({ code: "INVALID_CONFIG", description: RED._("bitrix24-postgres.errors.noSecret") });
        }
      }
      this.settings = {
        host,
        port,
        database,
        ssl,
        schema,
        user: withEnv(RED, this, credentials.user),
        password: withEnv(RED, this, credentials.password),
        leaseMs: Number.isFinite(leaseSeconds) && leaseSeconds > 0 ? leaseSeconds * 1000 : DEFAULT_LEASE_MS,
        secret,
      };
      this.where = `${this.where} schema ${schema}`;
    } catch (err) {
      this.configError =
        err instanceof Bitrix24Error ? err : new Bitrix24Error({ code: "INVALID_CONFIG", description: String(err) });
      this.error(RED._("bitrix24-postgres.errors.config", { error: this.configError.description }));
    }

    this.acquire = () => {
      if (!this.settings) throw this.configError;
      return acquirePgState(this.settings);
    };

    // Connect and migrate now, so a wrong password or a missing database is in the log at deploy, not at the first
    // event. The stores try again on their next use: nothing is given up.
    if (this.settings) {
      const { stores, release } = this.acquire();
      stores.ready().then(
        () => {
          this.lastError = undefined;
          this.log(RED._("bitrix24-postgres.ready", { where: this.where }));
          release();
        },
        (err: unknown) => {
          const error = err instanceof Bitrix24Error ? err : new Bitrix24Error({ code: "STATE_STORE_ERROR" });
          this.lastError = error;
          this.error(RED._("bitrix24-postgres.errors.connect", { error: error.description }));
          release();
        },
      );
    }
  }

  RED.nodes.registerType<PostgresNode, PostgresConfig, unknown, PostgresCredentials>(
    "bitrix24-postgres",
    Bitrix24PostgresNode,
    {
      credentials: {
        user: { type: "text" },
        password: { type: "password" },
      },
    },
  );
}

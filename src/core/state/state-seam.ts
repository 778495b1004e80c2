import type { BucketSettings, RateGate } from "../transport/rate-limiter";
import type { InstanceRegistry } from "./instance-registry";
import type { JournalKey, JournalLoadWarning, JournalProcess } from "./journal-files";
import type { SnapshotStores } from "./snapshot-store";

/**
 * The state seam (DESIGN.md, "Scale-out"): everything the package persists goes through the interfaces in this
 * file, so the rest of core (the OAuth session, the consumer, the installation endpoint) never knows where it
 * lands. Two implementations sit behind them: files in the Node-RED user directory (file-state.ts, the default;
 * several instances on one machine share the folder) and PostgreSQL (postgres/, several machines).
 *
 * What persists:
 * - the token lineage and the installation (`TokenStore`): rotated OAuth tokens, the fingerprint of the deployed
 *   refresh token they descend from, the adopted address of a renamed portal (`clientEndpoint`), and what the
 *   portal's installation POST said (application token);
 * - the process-id journal with delivery counts (`JournalStore`), written before events are emitted;
 * - the portal a node deployed without a URL adopted from its first installation (`adoptedPortal`);
 * - the refresh tokens of installation POSTs already seen (`installReplays`).
 *
 * Types only (no logic), so both implementations and every user import it without import circles.
 */

// ------------------------------------------------------------------------------------------------ tokens

export interface TokenSet {
  accessToken: string;
  refreshToken: string;
  /** Epoch ms; 0 when unknown (tokens pasted by hand). */
  expiresAt: number;
  /** `server_endpoint` of the last token answer: the portal's own OAuth server, where refreshes go. */
  serverEndpoint?: string;
  /** The portal's REST endpoint after a rename (learned from a redirect); absent while the configured one works. */
  clientEndpoint?: string;
}

export interface StoredTokens extends TokenSet {
  /** sha256 of the refresh token that was deployed when this lineage of tokens began (DESIGN.md "Scale-out"). */
  deployedFingerprint: string;
  updatedAt: number;
  /** What the portal's installation POST said (installation.ts); absent in files written before installs existed. */
  installation?: InstalledApplication;
}

/** The facts of the application's installation on the portal, kept beside the tokens (never in flows or logs). */
export interface InstalledApplication {
  /** The shared secret that signs the portal's event calls (ONOFFLINEEVENT): given only at installation. */
  applicationToken: string;
  memberId: string;
  /** host[:port] of the portal, as the OAuth server confirmed it. */
  domain: string;
  clientEndpoint: string;
  serverEndpoint: string;
  /** Epoch ms. */
  installedAt: number;
}

/** Where rotated OAuth tokens persist, shared by every process that drains the same portal with one app. */
export interface TokenStore {
  load(key: string): Promise<StoredTokens | undefined>;
  /**
   * Callers hold the key's lock. A save without `installation` keeps the stored one: the installation outlives
   * token rotations and re-authorisations, and only a new installation replaces it.
   */
  save(key: string, t: StoredTokens): Promise<void>;
  /**
   * Runs fn while holding the key's lock (in this process and across every process sharing the store). A holder
   * that dies must not keep the lock for good: files break a stale lock, a database releases a session's lock.
   */
  withLock<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

// ------------------------------------------------------------------------------------------------ journal

export type { InstanceRegistry, LiveInstance, QueueKey } from "./instance-registry";
// The journal's records are defined with its file format (journal-files.ts), the queue key with the registry.
export type { JournalKey, JournalLoadWarning, JournalProcess, JournalRecord } from "./journal-files";

/** A live neighbour's journal: what it holds, and since when its oldest get in flight runs. */
export interface PeerJournal {
  instanceId: string;
  processIds: Set<string>;
  fetching?: number;
}

/**
 * One consumer's part of the journal of a key (DESIGN.md, "Delivery semantics"). Which instances are alive comes
 * from the InstanceRegistry the session was opened with: a dead instance's journal is adopted, a live one's never.
 */
export interface JournalSession {
  /** Takes over what no live consumer holds: on first use what the store lists, then dead instances' journals. */
  adopt(): Promise<{ processes: JournalProcess[]; warning?: JournalLoadWarning }>;
  /** Replaces this consumer's processes (kept as given, not copied); resolves once they are durably stored. */
  save(processes: JournalProcess[]): Promise<void>;
  /** A get that may hold records is about to go out: neighbours must not take its batch for an orphan. */
  beginFetch(since: number): Promise<void>;
  /** The get of `since` answered or failed; `write`: no save follows to drop the mark, drop it now. */
  endFetch(since: number, write: boolean): Promise<void>;
  /** Detaches: the processes stay stored for the next consumer with the same key. */
  release(): Promise<void>;
  /** Process ids this process's consumers of the key hold or held (the orphan sweep leaves those alone). */
  knownProcessIds(): Set<string>;
  /** Start of the oldest get in flight of this key's consumers in this process. */
  fetchingSince(): number | undefined;
  /** The journals of the key's other LIVE instances. */
  peers(): Promise<PeerJournal[]>;
  /** Whether a journal of a dead instance of the key waits to be taken over. */
  abandoned(): Promise<boolean>;
}

/** Where process-id journals persist, keyed by portal host + client id + auth_connector + error flag. */
export interface JournalStore {
  open(key: JournalKey, registry: InstanceRegistry): JournalSession;
}

// ------------------------------------------------------------------------------------------------ the rest

/**
 * Refresh tokens of installation POSTs already answered, so a replayed body is refused without asking the OAuth
 * server again. Keys are digests of the refresh token, never the token.
 */
export interface ReplayStore {
  /** True when `key` was recorded before; records it otherwise. */
  isReplay(key: string): Promise<boolean>;
  /** Forgets `key` (the OAuth server could not be asked: the portal's retry deserves an answer). */
  forget(key: string): Promise<void>;
}

/** Every store of one place (a folder, a database schema): what a portal node hands to its client and get nodes. */
export interface StateStores {
  /** "files" or "postgres": for logs and status. */
  readonly kind: "files" | "postgres";
  /** Where, for people: a folder, or host/database/schema. Never a secret. */
  readonly where: string;
  readonly tokens: TokenStore;
  readonly journals: JournalStore;
  /** Who is alive among the consumers of a queue (the journals' takeover and the orphan sweep ask it). */
  readonly instances: InstanceRegistry;
  /** The change snapshots (issue 21's `changes` option); absent: the embedded store in the portal's stateDir. */
  readonly snapshots?: SnapshotStores;
  /**
   * Installation POSTs already answered, shared by every instance; absent (files): each process remembers them in
   * memory (InstallGate), which is enough on one machine, where one Node-RED receives the POST.
   */
  readonly installReplays?: ReplayStore;
  /**
   * The installation kept with the tokens of `key`, without waiting (a node's start and the trigger's token
   * check are synchronous): files read it now, a database answers from its last `loadInstallation`.
   */
  peekInstallation(key: string): InstalledApplication | undefined;
  /** Reads the installation of `key` from the store (and refreshes what peekInstallation answers). */
  loadInstallation(key: string): Promise<InstalledApplication | undefined>;
  /** The portal a node of `clientId` deployed without a URL adopted from its first installation (see peek). */
  adoptedPortal(clientId: string): string | undefined;
  rememberAdoptedPortal(clientId: string, portalUrl: string): Promise<void>;
  /**
   * The portal's bucket shared by every instance using this store (instances behind one address share the
   * portal's bucket, REFERENCE.md); absent: each process keeps its own (rate-limiter.ts sharedBucket).
   */
  bucket?(key: string, settings: BucketSettings): RateGate;
}

import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import { AckQueue } from "../../src/core/acks/ack-queue";
import { OfflineConsumer } from "../../src/core/consumer/offline-consumer";
import { OfflineEventsApi } from "../../src/core/queue/offline-api";
import { FileStateStores, fileStateStores } from "../../src/core/state/file-state";
import { journalKeyString } from "../../src/core/state/process-journal";
import type {
  InstalledApplication,
  InstanceRegistry,
  JournalKey,
  JournalProcess,
  JournalSession,
  JournalStore,
} from "../../src/core/state/state-seam";
import { startSandbox } from "../../src/sandbox";
import { consumerOptions } from "../kit/consumer";
import { sandboxClient } from "../kit/sandbox-client";
import { storedTokens } from "../kit/tokens";
import { until } from "../wait";

/**
 * The state seam: the consumer persists through the JournalStore interface alone, so another store (PostgreSQL)
 * needs no change to it; and the file implementation keeps what the portal node read directly before.
 */

/** A registry in which this consumer is alone: nobody else is alive. */
const alone: InstanceRegistry = {
  instanceId: "only",
  heartbeatMs: 60_000,
  deathNoticeMs: 60_000,
  announce: async () => undefined,
  renew: async () => undefined,
  withdraw: async () => undefined,
  liveOthers: async () => [],
  isLive: async (id) => id === "only",
};

/** A journal store in memory: only what the interface promises, nothing of the file store. */
class MemoryJournals implements JournalStore {
  readonly stored = new Map<string, JournalProcess[]>();
  /** Process ids in the store at the moment each save resolved. */
  readonly saved: string[][] = [];

  open(key: JournalKey, _registry: InstanceRegistry): JournalSession {
    const k = journalKeyString(key);
    let mine: JournalProcess[] = [];
    let released = false;
    const copy = (ps: JournalProcess[]) => ps.map((p) => ({ ...p, pending: p.pending.map((r) => ({ ...r })) }));
    return {
      adopt: async () => {
        mine = copy(this.stored.get(k) ?? []);
        return { processes: copy(mine) };
      },
      save: async (processes) => {
        if (released) return;
        mine = copy(processes);
        this.stored.set(k, mine);
        this.saved.push(mine.map((p) => p.processId));
      },
      release: async () => {
        released = true;
      },
      knownProcessIds: () => new Set((this.stored.get(k) ?? []).map((p) => p.processId)),
      beginFetch: async () => undefined,
      endFetch: async () => undefined,
      fetchingSince: () => undefined,
      peers: async () => [],
      abandoned: async () => false,
    };
  }
}

describe("state seam", () => {
  it("the consumer persists through a JournalStore alone: saved before emitting, adopted after a restart", async () => {
    const sandbox = await startSandbox({ rateLimit: false, events: 30 });
    const client = sandboxClient(sandbox, { retry: { maxAttempts: 1 } });
    const api = new OfflineEventsApi(client);
    const acks = new AckQueue(api);
    const journals = new MemoryJournals();
    const options = consumerOptions(client, sandbox.credentials.clientId, undefined, {
      journals,
      registry: alone,
      limit: 10,
      drain: false,
    });
    try {
      const first = new OfflineConsumer(api, acks, options);
      const emittedWithSaved: boolean[] = [];
      first.on("deliver", (group) => {
        emittedWithSaved.push(journals.saved.some((ids) => ids.includes(group.processId ?? "")));
      });
      should((await first.trigger()).events).equal(10);
      should(emittedWithSaved).eql([true]);
      await first.close();

      // A new consumer (a restart) with the same store re-selects the unacked process and redelivers it.
      const second = new OfflineConsumer(api, acks, options);
      const redelivered: number[] = [];
      second.on("deliver", (group) => {
        if (group.deliveries.every((d) => d.redelivered)) redelivered.push(group.deliveries.length);
        for (const d of group.deliveries) {
          acks.clear({ processId: group.processId!, authConnector: "", ids: [d.id] }).catch(() => undefined);
        }
      });
      await second.trigger();
      should(redelivered[0]).equal(10);
      await until(() => second.state.pending === 0);
      await second.close();
    } finally {
      await acks.close().catch(() => undefined);
      client.close();
      await sandbox.close();
    }
  });

  it("the file stores: installation peeked and loaded, adopted portal kept, one instance per folder", async () => {
    const dir = await fs.mkdtemp(join(tmpdir(), "b24-seam-"));
    try {
      const stores = fileStateStores(dir);
      should(fileStateStores(join(dir, "."))).equal(stores);
      should(stores).be.instanceOf(FileStateStores);
      should(stores.kind).equal("files");
      should(stores.instances.instanceId).be.a.String();
      const installation: InstalledApplication = {
        applicationToken: "app-token",
        memberId: "m",
        domain: "example.bitrix24.com",
        clientEndpoint: "https://example.bitrix24.com/rest/",
        serverEndpoint: "https://oauth.bitrix.info/rest/",
        installedAt: 7,
      };
      should(stores.peekInstallation("k")).be.undefined();
      await stores.tokens.withLock("k", () => stores.tokens.save("k", storedTokens("A", "R", { installation })));
      should(stores.peekInstallation("k")).eql(installation);
      should(await stores.loadInstallation("k")).eql(installation);
      should(stores.adoptedPortal("client")).be.undefined();
      await stores.rememberAdoptedPortal("client", "https://example.bitrix24.com");
      should(stores.adoptedPortal("client")).equal("https://example.bitrix24.com");
      const mode = (await fs.stat(join(dir, (await fs.readdir(dir)).find((f) => f.endsWith(".portal.json"))!))).mode;
      should(mode & 0o777).equal(0o600);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

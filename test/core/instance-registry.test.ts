import { promises as fs } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import { FileInstanceRegistry } from "../../src/core/state/file-instance-registry";
import { type QueueKey, queueKeyDigest } from "../../src/core/state/instance-registry";

const queue: QueueKey = { portalHost: "example.bitrix24.com", clientId: "local.app", authConnector: "", error: 0 };
const otherQueue: QueueKey = { ...queue, error: 1 };

describe("file instance registry", () => {
  let dir: string;
  let registry: FileInstanceRegistry;

  beforeEach(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), "b24-registry-"));
    registry = new FileInstanceRegistry(dir, { heartbeatMs: 50, staleMs: 1000 });
  });

  afterEach(async () => {
    await registry.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** An entry as another process on this machine (or another host) writes it. */
  async function entry(
    instanceId: string,
    fields: { pid: number; host?: string; ageMs?: number; queues?: QueueKey[] },
  ) {
    await fs.mkdir(join(dir, "instances"), { recursive: true });
    const e = {
      instanceId,
      pid: fields.pid,
      host: fields.host ?? hostname(),
      startedAt: Date.now() - 5000,
      renewedAt: Date.now() - (fields.ageMs ?? 0),
      queues: (fields.queues ?? [queue]).map(queueKeyDigest),
    };
    await fs.writeFile(join(dir, "instances", `${instanceId}.json`), JSON.stringify(e));
  }

  it("announces itself and renews on a heartbeat a neighbour can read", async () => {
    await registry.announce(queue);
    const file = join(dir, "instances", `${registry.instanceId}.json`);
    const first = JSON.parse(await fs.readFile(file, "utf8"));
    should(first).match({ instanceId: registry.instanceId, pid: process.pid, queues: [queueKeyDigest(queue)] });
    const until = Date.now() + 2000;
    let renewed = first.renewedAt;
    while (renewed === first.renewedAt && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
      renewed = JSON.parse(await fs.readFile(file, "utf8")).renewedAt;
    }
    should(renewed).be.above(first.renewedAt);
    // withdrawing the last queue keeps the entry, renewed once more (a redeploy must not look like a death), then
    // renewal stops: an instance that drains nothing goes stale
    await registry.withdraw(queue);
    const last = JSON.parse(await fs.readFile(file, "utf8"));
    should(last.queues).eql([]);
    await new Promise((r) => setTimeout(r, 150));
    should(JSON.parse(await fs.readFile(file, "utf8")).renewedAt).equal(last.renewedAt);
  });

  it("tells live neighbours of a queue from dead ones", async () => {
    await entry("alive", { pid: process.ppid });
    await entry("other-queue", { pid: process.ppid, queues: [otherQueue] });
    await entry("killed", { pid: 2 ** 22 + 4321 }); // its pid is gone: dead at once, though renewed just now
    await entry("stale", { pid: process.ppid, ageMs: 1500 }); // the pid was taken by another process: stale
    await entry("my-old-self", { pid: process.pid }); // a container restarted Node-RED under the same pid
    await entry("elsewhere", { pid: 1, host: "another-host" }); // another machine: its heartbeat is all we have
    await entry("elsewhere-stale", { pid: 1, host: "another-host", ageMs: 1500 });
    const live = (await registry.liveOthers(queue)).map((i) => i.instanceId).sort();
    should(live).eql(["alive", "elsewhere"]);
    should(await registry.isLive("other-queue")).be.true();
    should(await registry.isLive("killed")).be.false();
    should(await registry.isLive("never-announced")).be.false();
    should(await registry.isLive("../escape")).be.false();
  });
});

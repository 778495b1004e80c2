import { promises as fs } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import should from "should";
import { journalPrefix } from "../../src/core/state/journal-files";
import {
  type JournalKey,
  type JournalProcess,
  journalFileName,
  openJournal,
  SharedJournal,
} from "../../src/core/state/process-journal";
import { tempDirPerTest } from "../kit/temp-dir";

const key: JournalKey = { portalHost: "example.bitrix24.com", clientId: "local.app", authConnector: "", error: 0 };

/** The state a journal file holds: its last line (the file is a log of whole states, the last one wins). */
async function readState(file: string): Promise<{ version: number; processes: JournalProcess[] }> {
  const lines = (await fs.readFile(file, "utf8")).split("\n").filter((l) => l.trim() !== "");
  return JSON.parse(lines[lines.length - 1]);
}

function proc(processId: string, ids: number[], deliveryCount = 1): JournalProcess {
  return {
    processId,
    size: ids.length,
    deliveredAt: 1000,
    pending: ids.map((id) => ({ id, messageId: `m${String(id).padStart(31, "0")}`, deliveryCount })),
  };
}

describe("process journal", () => {
  let dir: string;
  tempDirPerTest("b24-journal-", (d) => {
    dir = d;
  });

  it("names the file by portal, application, connector and error flag, not by node", () => {
    const a = journalFileName(key);
    // and by the instance that writes it: instances on one machine share the folder, each writes its own file
    should(a).match(/^journal-example\.bitrix24\.com-[0-9a-f]{16}@[0-9]+-[0-9a-f]{10}\.json$/);
    should(journalFileName(key, "other-instance")).equal(a.replace(/@.*$/, "@other-instance.json"));
    should(journalFileName({ ...key })).equal(a);
    should(journalFileName({ ...key, authConnector: "BxTest" })).not.equal(a);
    should(journalFileName({ ...key, error: 1 })).not.equal(a);
    should(journalFileName({ ...key, clientId: "other" })).not.equal(a);
    should(journalFileName({ ...key, portalHost: "EXAMPLE.bitrix24.com" })).equal(a);
  });

  it("saves durably and a new consumer with the same key adopts what the file lists", async () => {
    const first = openJournal(dir, key);
    should((await first.adopt()).processes).eql([]);
    await first.save([proc("p1", [1, 2, 3]), proc("p2", [4], 2)]);
    const file = join(dir, journalFileName(key));
    const onDisk = await readState(file);
    should(onDisk.version).equal(1);
    should(onDisk.processes.map((p: JournalProcess) => p.processId)).eql(["p1", "p2"]);
    should((await fs.stat(file)).mode & 0o777).equal(0o600);
    await first.release();

    // "Restart": a fresh SharedJournal reads the file.
    const second = new SharedJournal(dir, key).attach();
    const adopted = await second.adopt();
    should(adopted.processes.map((p) => p.processId)).eql(["p1", "p2"]);
    should(adopted.processes[1].pending[0]).eql({ id: 4, messageId: `m${"4".padStart(31, "0")}`, deliveryCount: 2 });
    await second.release();
    const leftovers = (await fs.readdir(dir)).filter((f) => f.endsWith(".tmp"));
    should(leftovers).eql([]);
  });

  it("removes the file once no process is held", async () => {
    const handle = openJournal(dir, key);
    await handle.adopt();
    await handle.save([proc("p1", [1])]);
    await handle.save([]);
    should(await fs.readdir(dir)).eql([]);
    await handle.release();
  });

  it("hands the journal's processes to ONE of two consumers with the same key and keeps both sections", async () => {
    const seed = new SharedJournal(dir, key).attach();
    await seed.adopt();
    await seed.save([proc("old", [1])]);
    await seed.release();

    const a = openJournal(dir, key);
    const b = openJournal(dir, key);
    const gotA = await a.adopt();
    const gotB = await b.adopt();
    should(gotA.processes.map((p) => p.processId)).eql(["old"]);
    should(gotB.processes).eql([]);
    await a.save([proc("old", [1]), proc("a1", [2])]);
    await b.save([proc("b1", [3])]);
    should([...a.knownProcessIds()].sort()).eql(["a1", "b1", "old"]);
    const onDisk = await readState(join(dir, journalFileName(key)));
    should(onDisk.processes.map((p: JournalProcess) => p.processId).sort()).eql(["a1", "b1", "old"]);
    // A consumer that closes leaves its processes for the next one.
    await a.release();
    const c = openJournal(dir, key);
    should((await c.adopt()).processes.map((p) => p.processId).sort()).eql(["a1", "old"]);
    await b.release();
    await c.release();
  });

  it("a burst of concurrent saves all resolve and the last state wins", async () => {
    const handle = new SharedJournal(dir, key).attach();
    await handle.adopt();
    const saves: Promise<void>[] = [];
    for (let i = 1; i <= 50; i++)
      saves.push(
        handle.save([
          proc(
            "p",
            Array.from({ length: i }, (_, n) => n + 1),
          ),
        ]),
      );
    await Promise.all(saves);
    const onDisk = await readState(join(dir, journalFileName(key)));
    should(onDisk.processes[0].pending).have.length(50);
    await handle.release();
  });

  it("appends one line per save after the first and compacts to one line on the next start", async () => {
    const file = join(dir, journalFileName(key));
    const lines = async () => (await fs.readFile(file, "utf8")).split("\n").filter((l) => l.trim() !== "");
    const first = new SharedJournal(dir, key).attach();
    await first.adopt();
    await first.save([proc("p1", [1, 2])]);
    should(await lines()).have.length(1);
    await first.save([proc("p1", [2])]);
    await first.save([proc("p1", [2]), proc("p2", [3])]);
    should(await lines()).have.length(3);
    await first.release(); // writes the final state once more
    should(await lines()).have.length(4);

    const second = new SharedJournal(dir, key).attach();
    should((await second.adopt()).processes.map((p) => p.processId)).eql(["p1", "p2"]);
    await second.save([proc("p2", [3])]);
    should(await lines()).have.length(1);
    should((await readState(file)).processes.map((p) => p.processId)).eql(["p2"]);
    await second.release();
  });

  it("a torn last line (a crash mid-append) is skipped: the state before it is adopted", async () => {
    const file = join(dir, journalFileName(key));
    const seed = new SharedJournal(dir, key).attach();
    await seed.adopt();
    await seed.save([proc("p1", [1])]);
    await seed.release();
    const whole = await fs.readFile(file, "utf8");
    // What a crash half-way through appending the next state leaves behind.
    await fs.appendFile(file, `{"version":1,"key":{"portalHost":"example.bitrix24.com","clientId":"local.ap`);
    should(whole.endsWith("\n")).be.true();

    const handle = new SharedJournal(dir, key).attach();
    const { processes, warning } = await handle.adopt();
    should(warning).be.undefined();
    should(processes.map((p) => p.processId)).eql(["p1"]);
    await handle.release();
  });

  it("moves an unreadable journal aside and reports it instead of failing", async () => {
    await fs.writeFile(join(dir, journalFileName(key)), "{not json");
    const handle = new SharedJournal(dir, key).attach();
    const { processes, warning } = await handle.adopt();
    should(processes).eql([]);
    should(warning?.code).equal("JOURNAL_UNREADABLE");
    const files = await fs.readdir(dir);
    should(files.some((f) => f.includes(".unreadable-"))).be.true();
    await handle.release();
  });

  it("refuses a journal written for another key", async () => {
    const other = new SharedJournal(dir, { ...key, error: 1 });
    const h = other.attach();
    await h.adopt();
    await h.save([proc("x", [1])]);
    await h.release();
    // Same file name forced by copying: the key inside is checked.
    await fs.copyFile(join(dir, journalFileName({ ...key, error: 1 })), join(dir, journalFileName(key)));
    const handle = new SharedJournal(dir, key).attach();
    const { processes, warning } = await handle.adopt();
    should(processes).eql([]);
    should(warning?.description).match(/another portal/);
    await handle.release();
  });

  describe("instances sharing the folder", () => {
    /** A registry entry of another instance: alive as long as `pid` runs (our parent does). */
    async function neighbour(instanceId: string, pid: number): Promise<void> {
      await fs.mkdir(join(dir, "instances"), { recursive: true });
      const entry = { instanceId, pid, host: hostname(), startedAt: Date.now(), renewedAt: Date.now(), queues: [] };
      await fs.writeFile(join(dir, "instances", `${instanceId}.json`), JSON.stringify(entry));
    }

    async function writeJournal(name: string, processes: JournalProcess[], fetching?: number): Promise<void> {
      const line = { version: 1, key, updatedAt: Date.now(), processes, ...(fetching ? { fetching } : {}) };
      await fs.writeFile(join(dir, name), `${JSON.stringify(line)}\n`);
    }

    it("adopts the journals of dead instances and of versions before the registry, never a live one's", async () => {
      const prefix = journalPrefix(key);
      await neighbour("live-1", process.ppid);
      await neighbour("dead-1", 2 ** 22 + 12345); // no such pid
      await writeJournal(`${prefix}@live-1.json`, [proc("live", [1])]);
      await writeJournal(`${prefix}@dead-1.json`, [proc("dead", [2])]);
      await writeJournal(`${prefix}@gone-1+abc123.json`, [proc("half-taken", [3])]); // a taker that died midway
      await writeJournal(`${prefix}.json`, [proc("legacy", [4])]);
      const handle = openJournal(dir, key);
      const { processes } = await handle.adopt();
      should(processes.map((p) => p.processId).sort()).eql(["dead", "half-taken", "legacy"]);
      // taken files are renamed to ours at once and deleted once our durable write carries their processes
      should((await fs.readdir(dir)).filter((f) => f.includes("dead-1") || f === `${prefix}.json`)).eql([]);
      await handle.save(processes);
      const files = (await fs.readdir(dir)).filter((f) => f.startsWith("journal-")).sort();
      should(files).eql([`${prefix}@live-1.json`, journalFileName(key)].sort());
      should((await readState(join(dir, journalFileName(key)))).processes.map((p) => p.processId).sort()).eql([
        "dead",
        "half-taken",
        "legacy",
      ]);
      // the live neighbour's journal is readable as a peer, with what it holds
      const peers = await handle.peers();
      should(peers.map((p) => [p.instanceId, [...p.processIds]])).eql([["live-1", ["live"]]]);
      await handle.release();
    });

    it("marks a get in flight in the file before it goes out, and drops the mark after", async () => {
      const handle = openJournal(dir, key);
      await handle.adopt();
      await handle.save([proc("p1", [1])]);
      await handle.beginFetch(1234);
      should(handle.fetchingSince()).equal(1234);
      const marked = JSON.parse((await fs.readFile(join(dir, journalFileName(key)), "utf8")).trim().split("\n").pop()!);
      should(marked.fetching).equal(1234);
      should(marked.processes.map((p: JournalProcess) => p.processId)).eql(["p1"]);
      await handle.endFetch(1234, true);
      should(handle.fetchingSince()).be.undefined();
      should((await readState(join(dir, journalFileName(key)))) as object).not.have.property("fetching");
      await handle.release();
    });
  });
});

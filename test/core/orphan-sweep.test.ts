import should from "should";
import { newTally } from "../../src/core/consumer/consumer-types";
import { OrphanSweep } from "../../src/core/consumer/orphan-sweep";
import type { OfflineListParams, OfflineListRecord } from "../../src/core/rest/types";

function record(id: number, processId: string): OfflineListRecord {
  return {
    ID: String(id),
    TIMESTAMP_X: "2026-01-01T00:00:00+00:00",
    EVENT_NAME: "ONCRMDEALUPDATE",
    EVENT_DATA: {},
    EVENT_ADDITIONAL: {},
    MESSAGE_ID: `m${id}`,
    PROCESS_ID: processId,
    ERROR: "0",
  };
}

describe("orphan sweep", () => {
  function portal(held: () => OfflineListRecord[], calls: OfflineListParams[] = []) {
    return {
      list: async (params: OfflineListParams) => {
        calls.push(params);
        const records = held();
        return { records, total: records.length, next: undefined };
      },
    };
  }

  /** A sweep of 5 pages of the queue without a connector, the registry's rule unless `over` says otherwise. */
  function sweepOn(api: ReturnType<typeof portal>, over: Partial<ConstructorParameters<typeof OrphanSweep>[1]> = {}) {
    return new OrphanSweep(api, {
      errorFlag: 0,
      authConnector: "",
      sweepPages: 5,
      orphanAgeMs: 60_000,
      ageRule: false,
      ...over,
    });
  }

  it("takes an unknown process id at once when no live consumer has a get in flight from before the list", async () => {
    const calls: OfflineListParams[] = [];
    const held = [record(1, "lost"), record(2, "mine"), record(3, "")];
    const sweep = sweepOn(
      portal(() => held, calls),
      { authConnector: "k" },
    );
    const tally = newTally();
    const nothingInFlight = async () => ({ known: new Set(["mine"]) });
    should(await sweep.findOrphans(nothingInFlight, tally)).containDeep({ adopt: ["lost"], deferred: false });
    should((await sweep.findOrphans(nothingInFlight, tally)).sizes.get("lost")).equal(1);
    should(calls[0]).containDeep({ filter: { "=ERROR": 0 }, start: 0, auth_connector: "k" });
    // a get that started before the list answered may have held "lost" (its answer not journaled yet): look again
    const startedBefore = async () => ({ known: new Set(["mine"]), fetchingSince: Date.now() - 1 });
    should(await sweep.findOrphans(startedBefore, tally)).match({ adopt: [], deferred: true });
    // a get that started after the list cannot have held anything the list showed
    const startedAfter = async () => ({ known: new Set(["mine"]), fetchingSince: Date.now() + 1000 });
    should(await sweep.findOrphans(startedAfter, tally)).containDeep({ adopt: ["lost"], deferred: false });
    // once its answer is in, the get's process id is known: nothing to take
    const answered = async () => ({ known: new Set(["mine", "lost"]) });
    should(await sweep.findOrphans(answered, tally)).match({ adopt: [], deferred: false });
    should(tally.requests).equal(5);
  });

  it("under the age rule (consumers the registry cannot see), only after orphanAgeMs, forgetting ids that went away", async () => {
    let held = [record(1, "lost"), record(2, "mine"), record(3, "")];
    const sweep = sweepOn(
      portal(() => held),
      { orphanAgeMs: 30, ageRule: true },
    );
    const tally = newTally();
    const known = async () => ({ known: new Set(["mine"]) });
    should((await sweep.findOrphans(known, tally)).adopt).eql([]);
    await new Promise((r) => setTimeout(r, 40));
    should((await sweep.findOrphans(known, tally)).adopt).eql(["lost"]);
    // Taken over: the age starts again if it shows up once more.
    should((await sweep.findOrphans(known, tally)).adopt).eql([]);
    held = [];
    await sweep.findOrphans(known, tally);
    held = [record(1, "lost")];
    should((await sweep.findOrphans(known, tally)).adopt).eql([]);
    should(tally.requests).equal(5);
  });
});

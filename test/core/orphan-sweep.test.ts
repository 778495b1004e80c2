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
  it("takes over a process id only after it stayed unknown for orphanAgeMs, and forgets ids that went away", async () => {
    let held = [record(1, "lost"), record(2, "mine"), record(3, "")];
    const calls: OfflineListParams[] = [];
    const api = {
      list: async (params: OfflineListParams) => {
        calls.push(params);
        return { records: held, total: held.length, next: undefined };
      },
    };
    const sweep = new OrphanSweep(api, { errorFlag: 0, authConnector: "k", sweepPages: 5, orphanAgeMs: 30 });
    const tally = newTally();
    const known = () => new Set(["mine"]);
    should(await sweep.findOrphans(known, tally)).eql([]);
    should(calls[0]).containDeep({ filter: { "=ERROR": 0 }, start: 0, auth_connector: "k" });
    await new Promise((r) => setTimeout(r, 40));
    should(await sweep.findOrphans(known, tally)).eql(["lost"]);
    // Taken over: the age starts again if it shows up once more.
    should(await sweep.findOrphans(known, tally)).eql([]);
    held = [];
    await sweep.findOrphans(known, tally);
    held = [record(1, "lost")];
    should(await sweep.findOrphans(known, tally)).eql([]);
    should(tally.requests).equal(5);
  });
});

import should from "should";
import { summarizeQueue } from "../../src/core/queue/queue-summary";
import type { OfflineListRecord } from "../../src/core/rest/types";

function record(id: number, name: string, ts: string, processId: string | null, error: "0" | "1"): OfflineListRecord {
  return {
    ID: String(id),
    TIMESTAMP_X: ts,
    EVENT_NAME: name,
    EVENT_DATA: {},
    EVENT_ADDITIONAL: {},
    MESSAGE_ID: "m".repeat(32),
    PROCESS_ID: processId,
    ERROR: error,
  };
}

describe("summarizeQueue", () => {
  it("partitions records into unprocessed, held and error, counts by event, finds the oldest", () => {
    const records = [
      record(1, "ONCRMDEALUPDATE", "2024-05-01T10:00:00+03:00", null, "0"),
      record(2, "ONCRMDEALUPDATE", "2024-05-01T06:59:00+00:00", "p".repeat(32), "0"),
      record(3, "ONTASKADD", "2024-05-01T09:00:00+03:00", null, "1"),
      record(4, "ONTASKADD", "2024-05-01T09:30:00+03:00", "q".repeat(32), "1"),
    ];
    should(summarizeQueue(records, 120)).eql({
      total: 120,
      counted: 4,
      held: 1,
      error: 2,
      unprocessed: 1,
      byEvent: { ONCRMDEALUPDATE: 2, ONTASKADD: 2 },
      oldest: "2024-05-01T09:00:00+03:00",
    });
  });

  it("summarises an empty queue", () => {
    should(summarizeQueue([])).eql({
      total: 0,
      counted: 0,
      held: 0,
      error: 0,
      unprocessed: 0,
      byEvent: {},
      oldest: null,
    });
  });
});

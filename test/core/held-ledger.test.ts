import should from "should";
import type { AckedNotice } from "../../src/core/acks/ack-queue";
import { HeldLedger, RedeliveryTimer } from "../../src/core/consumer/held-ledger";
import type { OfflineEvent } from "../../src/core/rest/types";

function events(ids: number[]): OfflineEvent[] {
  return ids.map((id) => ({
    ID: String(id),
    TIMESTAMP_X: "2026-01-01T00:00:00+00:00",
    EVENT_NAME: "ONCRMDEALUPDATE",
    EVENT_DATA: { FIELDS: { ID: id } },
    EVENT_ADDITIONAL: {},
    MESSAGE_ID: `m${id}`,
  }));
}

function notice(part: Partial<AckedNotice>): AckedNotice {
  return { kind: "clear", processId: "p1", authConnector: "", ids: [], messageIds: [], allOfProcess: false, ...part };
}

const rules = { errorFlag: 0 as const, authConnector: "", maxDeliveries: 3, ackTimeoutMs: 1000 };

describe("held-process ledger", () => {
  it("holds fetched records under their process until acked by id, message id or whole process", () => {
    const ledger = new HeldLedger(rules);
    const deliveries = ledger.recordFetched("p1", events([1, 2, 3, 4]), 0);
    should(deliveries.map((d) => [d.id, d.deliveryCount, d.redelivered])).eql([
      [1, 1, false],
      [2, 1, false],
      [3, 1, false],
      [4, 1, false],
    ]);
    should(ledger.pending).equal(4);
    should(ledger.applyAck(notice({ ids: [1] }))).be.true();
    should(ledger.applyAck(notice({ messageIds: ["m2"] }))).be.true();
    should(ledger.pending).equal(2);
    // Another connector's ack, or an error mark of error=1 records, leaves ours alone.
    should(ledger.applyAck(notice({ authConnector: "other", allOfProcess: true }))).be.false();
    should(ledger.applyAck(notice({ allOfProcess: true }))).be.true();
    should(ledger.pending).equal(0);
    should(ledger.processIds()).eql([]);
  });

  it("auto mode (no process id) holds nothing", () => {
    const ledger = new HeldLedger(rules);
    should(ledger.recordFetched(null, events([1, 2]), 0)).have.length(2);
    should(ledger.pending).equal(0);
  });

  it("re-selects raise delivery counts; past maxDeliveries error=0 records are to be marked, error=1 ones dead-lettered", () => {
    const ledger = new HeldLedger(rules);
    ledger.recordFetched("p1", events([1, 2]), 0);
    should(ledger.recordReselected("p1", events([1, 2]), 10, true).redeliver.map((d) => d.deliveryCount)).eql([2, 2]);
    // Record 2 was acked elsewhere: the re-select no longer returns it.
    const third = ledger.recordReselected("p1", events([1]), 20, true);
    should(third.redeliver.map((d) => [d.id, d.deliveryCount])).eql([[1, 3]]);
    should(ledger.pending).equal(1);
    const fourth = ledger.recordReselected("p1", events([1]), 30, true);
    should(fourth).eql({ redeliver: [], dead: [], exhausted: ["m1"] });
    // While being marked, the record is not delivered again.
    should(ledger.recordReselected("p1", events([1]), 40, true)).eql({ redeliver: [], dead: [], exhausted: [] });
    ledger.unmark("p1", ["m1"]);
    should(ledger.recordReselected("p1", events([1]), 50, true).exhausted).eql(["m1"]);

    const errors = new HeldLedger({ ...rules, errorFlag: 1 });
    errors.recordFetched("p2", events([7]), 0);
    errors.recordReselected("p2", events([7]), 1, true);
    errors.recordReselected("p2", events([7]), 2, true);
    const dead = errors.recordReselected("p2", events([7]), 3, true);
    should(dead.dead.map((d) => [d.id, d.deliveryCount])).eql([[7, 4]]);
    should(errors.applyAck(notice({ kind: "error", processId: "p2", allOfProcess: true }))).be.false();
  });

  it("counts how many held records taken clear commands cover", () => {
    const ledger = new HeldLedger(rules);
    ledger.recordFetched("p1", events([1, 2, 3]), 0);
    const clear = (params: Record<string, unknown>) => ({ method: "event.offline.clear", params });
    should(
      ledger.coveredBy({
        a: clear({ process_id: "p1", id: [1, 9] }),
        b: clear({ process_id: "p1", message_id: ["m2"] }),
        c: clear({ process_id: "other", id: [3] }),
        d: { method: "event.offline.error", params: { process_id: "p1", message_id: ["m3"] } },
      }),
    ).equal(2);
    should(ledger.coveredBy({ a: clear({ process_id: "p1" }) })).equal(3);
  });

  it("hands out processes whose ack timeout ran out once, postpones failed ones and drops emptied ones", () => {
    const ledger = new HeldLedger(rules);
    ledger.recordFetched("p1", events([1]), 0);
    ledger.recordFetched("p2", events([2]), 500);
    should(ledger.nextDue()).equal(1000);
    should(ledger.takeDue(999)).have.length(0);
    const due = ledger.takeDue(1000);
    should(due.map((p) => p.processId)).eql(["p1"]);
    should(ledger.takeDue(5000).map((p) => p.processId)).eql(["p2"]); // p1 is busy
    ledger.postpone(due, 4000);
    ledger.finishDue(due);
    should(ledger.nextDue()).equal(4000);
    const again = ledger.takeDue(4000);
    should(again.map((p) => p.processId)).eql(["p1"]);
    ledger.applyAck(notice({ ids: [1] })); // a busy process is not dropped by an ack...
    should(ledger.processIds()).containEql("p1");
    ledger.finishDue(again); // ...but once its re-select is over
    should(ledger.processIds()).not.containEql("p1");
  });

  it("snapshots what the journal keeps, and adopts it back busy", () => {
    const ledger = new HeldLedger(rules);
    ledger.recordFetched("p1", events([1, 2]), 5);
    const snap = ledger.snapshot();
    should(snap).eql([
      {
        processId: "p1",
        size: 2,
        deliveredAt: 5,
        pending: [
          { id: 1, messageId: "m1", deliveryCount: 1 },
          { id: 2, messageId: "m2", deliveryCount: 1 },
        ],
      },
    ]);
    const next = new HeldLedger(rules);
    next.adoptJournal(snap);
    should(next.pending).equal(2);
    should(next.nextDue()).equal(Number.POSITIVE_INFINITY); // busy until re-selected
    next.releaseBusy(["p1"]);
    should(next.nextDue()).equal(1005);
  });

  it("the redelivery timer fires at the earliest deadline and can be stopped", async () => {
    const ledger = new HeldLedger({ ...rules, ackTimeoutMs: 20 });
    let fired = 0;
    const timer = new RedeliveryTimer(ledger, () => fired++);
    timer.schedule();
    ledger.recordFetched("p1", events([1]), Date.now());
    timer.schedule();
    await new Promise((r) => setTimeout(r, 60));
    should(fired).equal(1);
    timer.schedule();
    timer.stop();
    await new Promise((r) => setTimeout(r, 40));
    should(fired).equal(1);
  });
});

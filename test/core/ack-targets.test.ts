import should from "should";
import { clearTargets, errorTargets } from "../../src/core/acks/ack-targets";
import type { Bitrix24Error } from "../../src/core/rest/errors";
import type { Bitrix24Meta } from "../../src/nodes/shared/msg-contract";
import { bitrix24Meta } from "../kit/messages";

const P = "p".repeat(32);
const M1 = "a".repeat(32);
const M2 = "b".repeat(32);

function event(id: number, messageId: string) {
  return {
    ID: String(id),
    TIMESTAMP_X: "",
    EVENT_NAME: "ONCRMDEALUPDATE",
    EVENT_DATA: {},
    EVENT_ADDITIONAL: {},
    MESSAGE_ID: messageId,
  };
}

function meta(over: Partial<Bitrix24Meta> = {}) {
  return bitrix24Meta({ portal: "x", processId: P, ...over });
}

function refusal(fn: () => unknown): Bitrix24Error {
  try {
    fn();
  } catch (err) {
    return err as Bitrix24Error;
  }
  throw new Error("expected a refusal");
}

describe("ack targets (msg -> what to clear / mark)", () => {
  describe("clearTargets", () => {
    it("reads a single-event msg from msg.bitrix24, connector included", () => {
      const msg = { payload: event(7, M1), bitrix24: meta({ id: 7, messageId: M1, authConnector: "crm" }) };
      should(clearTargets(msg)).eql([{ processId: P, authConnector: "crm", ids: [7] }]);
      should(clearTargets(msg, "message_id")).eql([{ processId: P, authConnector: "crm", messageIds: [M1] }]);
    });

    it("prefers msg.bitrix24's ids over an object of the flow's own in msg.payload", () => {
      const msg = { payload: { ID: "999", TITLE: "a deal" }, bitrix24: meta({ id: 7, messageId: M1 }) };
      should(clearTargets(msg)).eql([{ processId: P, ids: [7] }]);
    });

    it("reads a batch msg: every event of msg.payload", () => {
      const msg = { payload: [event(1, M1), event(2, M2)], bitrix24: meta({ batch: { index: 0, size: 2 } }) };
      should(clearTargets(msg)).eql([{ processId: P, ids: [1, 2] }]);
      should(clearTargets(msg, "message_id")).eql([{ processId: P, messageIds: [M1, M2] }]);
    });

    it("reads a msg after a split node: msg.payload.ID with the batch's msg.bitrix24 (id 0)", () => {
      const msg = { payload: event(5, M2), bitrix24: meta({ id: 0, messageId: "" }) };
      should(clearTargets(msg)).eql([{ processId: P, ids: [5] }]);
      should(clearTargets({ payload: event(5, M2), processId: P }, "message_id")).eql([
        { processId: P, messageIds: [M2] },
      ]);
    });

    it("takes explicit msg.ids / msg.messageIds with msg.processId and msg.authConnector", () => {
      should(clearTargets({ ids: [3, "4"], processId: P, authConnector: "c1" })).eql([
        { processId: P, authConnector: "c1", ids: [3, 4] },
      ]);
      should(clearTargets({ messageIds: M1, processId: ` ${P} ` }, "id")).eql([{ processId: P, messageIds: [M1] }]);
      // Explicit ids win over the event the msg carries, and both kinds may come together.
      const both = clearTargets({ ids: [3], messageIds: [M2], bitrix24: meta({ id: 9 }) });
      should(both).eql([{ processId: P, ids: [3], messageIds: [M2] }]);
    });

    it("clears the whole process only with by=process", () => {
      const msg = { payload: event(1, M1), bitrix24: meta({ id: 1, authConnector: "k" }) };
      should(clearTargets(msg, "process")).eql([{ processId: P, authConnector: "k", allOfProcess: true }]);
    });

    it("falls back to MESSAGE_ID for an event without an ID (by=id)", () => {
      should(clearTargets({ payload: [{ MESSAGE_ID: M1 }], processId: P })).eql([{ processId: P, messageIds: [M1] }]);
    });

    it("merges duplicate ids", () => {
      should(clearTargets({ ids: [3, 3, "3"], processId: P })).eql([{ processId: P, ids: [3] }]);
    });

    it("refuses a msg without a process id, saying how to wire it", () => {
      const err = refusal(() => clearTargets({ payload: event(1, M1) }));
      should(err.code).equal("INVALID_ARGUMENT");
      should(err.description).equal(
        "no process id: wire this node after a bitrix24-offline-get in ack mode, or set msg.processId",
      );
      const auto = refusal(() => clearTargets({ payload: event(1, M1), bitrix24: meta({ processId: null, id: 1 }) }));
      should(auto.description).match(/auto mode/);
    });

    it("refuses bad id types and empty lists instead of clearing the whole process", () => {
      should(refusal(() => clearTargets({ ids: [0], processId: P })).description).match(/msg\.ids must hold/);
      should(refusal(() => clearTargets({ ids: [{}], processId: P })).code).equal("INVALID_ARGUMENT");
      should(refusal(() => clearTargets({ messageIds: ["x"], processId: P })).description).match(/32-character/);
      should(refusal(() => clearTargets({ processId: 5, ids: [1] })).description).match(/msg\.processId must be/);
      should(refusal(() => clearTargets({ payload: [], processId: P })).description).match(/nothing cleared/);
      should(refusal(() => clearTargets({ payload: ["x"], processId: P })).description).match(/not an event record/);
      should(refusal(() => clearTargets({ payload: { ID: "abc" }, processId: P })).description).match(
        /ID must be a positive integer/,
      );
      should(refusal(() => clearTargets({ payload: "hello", processId: P })).description).match(/no event to act on/);
      should(refusal(() => clearTargets("nope")).description).match(/not an object/);
      should(refusal(() => clearTargets({ ids: [1], processId: P }, "all" as "id")).description).match(/by must be/);
      should(refusal(() => clearTargets({ ids: [1], processId: P, authConnector: 3 })).description).match(
        /authConnector must be a string/,
      );
    });
  });

  describe("errorTargets", () => {
    it("marks by MESSAGE_ID from a single-event msg, a batch msg, a split msg and msg.messageIds", () => {
      should(errorTargets({ payload: event(7, M1), bitrix24: meta({ id: 7, messageId: M1, authConnector: "c" }) })).eql(
        [{ processId: P, authConnector: "c", messageIds: [M1] }],
      );
      should(errorTargets({ payload: [event(1, M1), event(2, M2)], bitrix24: meta() })).eql([
        { processId: P, messageIds: [M1, M2] },
      ]);
      should(errorTargets({ payload: event(2, M2), bitrix24: meta() })).eql([{ processId: P, messageIds: [M2] }]);
      should(errorTargets({ messageIds: [M1], processId: P })).eql([{ processId: P, messageIds: [M1] }]);
    });

    it("refuses msg.ids alone: the portal marks by message id only", () => {
      should(refusal(() => errorTargets({ ids: [1], processId: P })).description).match(/MESSAGE_ID only/);
      should(refusal(() => errorTargets({ payload: [{ ID: "1" }], processId: P })).description).match(
        /MESSAGE_ID only/,
      );
    });

    it("an empty msg.messageIds is named as empty, not as msg.ids", () => {
      const refused = refusal(() => errorTargets({ messageIds: [], processId: P }));
      should(refused.description).match(/empty msg\.messageIds/);
      should(refused.description).not.match(/msg\.ids cannot/);
    });

    it("refuses records fetched with error=1 clearly, suggesting to clear them after storing", () => {
      const err = refusal(() =>
        errorTargets({ payload: event(1, M1), bitrix24: meta({ id: 1, messageId: M1, error: 1 }) }),
      );
      should(err.code).equal("INVALID_ARGUMENT");
      should(err.description).match(/error=1/);
      should(err.description).match(/cannot mark them again/);
      should(err.description).match(/clear them with bitrix24-offline-clear/);
    });

    it("refuses a msg without a process id", () => {
      should(refusal(() => errorTargets({ messageIds: [M1] })).description).match(/^no process id/);
    });
  });
});

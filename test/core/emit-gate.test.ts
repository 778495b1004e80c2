import should from "should";
import { EmitGate } from "../../src/core/queue/emit-gate";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("EmitGate", () => {
  it("emits the first at once and merges the rest of the gap into one trailing emission", async () => {
    const out: Array<[string, number]> = [];
    const gate = new EmitGate<string>((item, merged) => out.push([item, merged]), 50);
    should(gate.offer("a")).be.true();
    should(gate.offer("b")).be.false();
    should(gate.offer("c")).be.false();
    should(out).eql([["a", 1]]);
    should(gate.waiting).be.true();
    await sleep(80);
    should(out).eql([
      ["a", 1],
      ["c", 2],
    ]);
    // The trailing emission starts a new gap.
    should(gate.offer("d")).be.false();
    await sleep(80);
    should(out.length).equal(3);
    gate.close();
  });

  it("emits at once again after a quiet gap", async () => {
    const out: string[] = [];
    const gate = new EmitGate<string>((item) => out.push(item), 20);
    gate.offer("a");
    await sleep(40);
    should(gate.offer("b")).be.true();
    should(out).eql(["a", "b"]);
    gate.close();
  });

  it("uses the merge function to pick what the trailing emission carries", async () => {
    const out: string[] = [];
    const gate = new EmitGate<string>(
      (item) => out.push(item),
      30,
      (waiting, incoming) => (incoming === "push" || waiting !== "push" ? incoming : waiting),
    );
    gate.offer("poll");
    gate.offer("push");
    gate.offer("poll");
    await sleep(50);
    should(out).eql(["poll", "push"]);
    gate.close();
  });

  it("never emits more than one per gap under a steady stream", async () => {
    const times: number[] = [];
    const gate = new EmitGate<number>(() => times.push(Date.now()), 40);
    const start = Date.now();
    while (Date.now() - start < 200) {
      gate.offer(1);
      await sleep(5);
    }
    gate.close();
    for (let i = 1; i < times.length; i++) should(times[i] - times[i - 1]).be.aboveOrEqual(38);
    should(times.length).be.within(4, 7);
  });

  it("close drops the trailing emission and its timer", async () => {
    const out: string[] = [];
    const gate = new EmitGate<string>((item) => out.push(item), 20);
    gate.offer("a");
    gate.offer("b");
    gate.close();
    should(gate.waiting).be.false();
    should(gate.offer("c")).be.false();
    await sleep(40);
    should(out).eql(["a"]);
  });
});

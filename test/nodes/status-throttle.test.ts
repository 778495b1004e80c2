import should from "should";
import { StatusThrottle } from "../../src/nodes/shared/status-throttle";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("StatusThrottle", () => {
  it("draws the first change at once, then at most once per interval, and the latest state last", async () => {
    let state = 0;
    const drawn: number[] = [];
    const status = new StatusThrottle(() => drawn.push(state), 50);
    for (state = 1; state <= 100; state++) status.soon();
    state = 100;
    should(drawn).eql([1]); // the first soon() found no recent draw
    await sleep(80);
    should(drawn).eql([1, 100]); // one timed draw, showing the state when it fired
  });

  it("now() draws at once and drops a waiting draw; cancel() drops it too", async () => {
    let state = "a";
    const drawn: string[] = [];
    const status = new StatusThrottle(() => drawn.push(state), 30);
    status.now();
    state = "b";
    status.soon(); // too soon: waits
    state = "c";
    status.now();
    state = "d";
    status.soon();
    status.cancel();
    await sleep(60);
    should(drawn).eql(["a", "c"]);
  });
});

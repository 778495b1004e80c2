import should from "should";
import {
  NotificationError,
  parseNotificationBody,
  readNotification,
  tokenMatches,
  verifyNotification,
} from "../../src/core/queue/notification";
import { parsePhpForm } from "../../src/core/rest/php-form";
import { ReplayGuard } from "../../src/core/rest/replay-guard";

const TOKEN = "app-token-0123456789";

function formBody(token: string | undefined, extra = ""): string {
  const auth = token === undefined ? "" : `&auth%5Bapplication_token%5D=${encodeURIComponent(token)}`;
  return (
    "event=ONOFFLINEEVENT&data%5Bevent%5D=ONCRMDEALUPDATE&data%5BminTimeout%5D=1&ts=1700000000" +
    `&auth%5Baccess_token%5D=at&auth%5Brefresh_token%5D=rt${auth}${extra}`
  );
}

describe("php-form", () => {
  it("nests bracketed keys, decodes + and %, and turns 0..n-1 keys into arrays", () => {
    const parsed = parsePhpForm("a%5Bb%5D%5Bc%5D=x+y&list%5B%5D=1&list%5B%5D=2&idx%5B0%5D=p&idx%5B1%5D=q&plain=%41");
    should(parsed).eql({ a: { b: { c: "x y" } }, list: ["1", "2"], idx: ["p", "q"], plain: "A" });
  });

  it("ignores prototype keys and caps depth and pair count", () => {
    const parsed = parsePhpForm("__proto__%5Bpolluted%5D=1&a%5Bconstructor%5D=2&ok=1");
    should(parsed).eql({ ok: "1" });
    should(({} as Record<string, unknown>).polluted).be.undefined();
    const deep = parsePhpForm("a[1][2][3][4][5][6][7]=x", { maxDepth: 2 }) as Record<string, unknown>;
    should(deep).eql({ a: { "1": { "2": { "[3][4][5][6][7]": "x" } } } });
    should(Object.keys(parsePhpForm("a=1&b=2&c=3", { maxPairs: 2 }))).eql(["a", "b"]);
  });

  it("keeps a malformed percent escape as sent", () => {
    should(parsePhpForm("a=%zz")).eql({ a: "%zz" });
  });
});

describe("notification", () => {
  it("reads the portal's form body, strips auth and keeps event, ts, data", () => {
    const n = readNotification(formBody(TOKEN), "application/x-www-form-urlencoded", TOKEN);
    should(n).eql({ event: "ONOFFLINEEVENT", ts: 1700000000, data: { event: "ONCRMDEALUPDATE", minTimeout: "1" } });
    should(JSON.stringify(n)).not.containEql("rt");
  });

  it("reads JSON, by content type or by sniffing", () => {
    const body = JSON.stringify({ event: "onofflineevent", ts: "1700000001", auth: { application_token: TOKEN } });
    should(readNotification(body, "application/json; charset=utf-8", TOKEN)).eql({
      event: "ONOFFLINEEVENT",
      ts: 1700000001,
      data: null,
    });
    should(readNotification(body, undefined, TOKEN).ts).equal(1700000001);
  });

  it("refuses a missing or wrong token with 401, before looking at the rest", () => {
    for (const body of [formBody(undefined), formBody("wrong"), formBody("")]) {
      const err = (() => {
        try {
          readNotification(body, "application/x-www-form-urlencoded", TOKEN);
        } catch (e) {
          return e;
        }
      })();
      should(err).be.instanceOf(NotificationError);
      should((err as NotificationError).status).equal(401);
    }
    should.throws(() => verifyNotification({ auth: { application_token: "x" } }, TOKEN), /application_token/);
  });

  it("refuses everything when no token is configured", () => {
    should(tokenMatches("", "")).be.false();
    should(tokenMatches("", "anything")).be.false();
    should(tokenMatches(TOKEN, TOKEN)).be.true();
    should(tokenMatches(TOKEN, `${TOKEN}x`)).be.false();
    should(tokenMatches(TOKEN, ["array"])).be.false();
  });

  it("answers 400 to malformed JSON, non-objects, a missing or foreign event", () => {
    const statusOf = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as NotificationError).status;
      }
      return 0;
    };
    should(statusOf(() => parseNotificationBody("{not json", "application/json"))).equal(400);
    should(statusOf(() => parseNotificationBody("[1,2]", "application/json"))).equal(400);
    should(statusOf(() => verifyNotification({ auth: { application_token: TOKEN } }, TOKEN))).equal(400);
    should(statusOf(() => verifyNotification({ event: "ONTASKADD", auth: { application_token: TOKEN } }, TOKEN))).equal(
      400,
    );
  });
});

describe("ReplayGuard", () => {
  it("flags the same key inside the window only, and forgets after it", () => {
    let now = 1000;
    const guard = new ReplayGuard(500, 100, () => now);
    const key = ReplayGuard.keyOf(1700000000, "body");
    should(guard.isReplay(key)).be.false();
    should(guard.isReplay(key)).be.true();
    should(guard.isReplay(ReplayGuard.keyOf(1700000000, "other body"))).be.false();
    should(guard.isReplay(ReplayGuard.keyOf(1700000001, "body"))).be.false();
    now += 501;
    should(guard.isReplay(key)).be.false();
    should(guard.size).equal(1);
  });

  it("stays bounded", () => {
    const guard = new ReplayGuard(60_000, 10);
    for (let i = 0; i < 100; i++) guard.isReplay(`k${i}`);
    should(guard.size).equal(10);
    should(guard.isReplay("k99")).be.true();
    should(guard.isReplay("k0")).be.false();
  });
});

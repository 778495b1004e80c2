import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import should from "should";
import { type BodyReadError, readLimitedBody } from "../../src/core/rest/http-body";

function post(
  port: number,
  body: string,
  headers: Record<string, string> = {},
  path = "/",
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method: "POST", path, headers }, (res) => {
      let text = "";
      res.on("data", (c) => {
        text += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("readLimitedBody", () => {
  let server: Server;
  let port: number;

  before(async () => {
    server = createServer(async (req, res) => {
      if (req.url === "/consumed") {
        for await (const _chunk of req) {
          // drain, as a foreign middleware would
        }
      }
      readLimitedBody(req, 16).then(
        (text) => res.end(`ok:${text}`),
        (err: BodyReadError) => {
          res.statusCode = err.status;
          res.setHeader("Connection", "close");
          res.end(err.message);
        },
      );
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });

  after(() => new Promise<void>((r) => server.close(() => r())));

  it("reads a body within the limit", async () => {
    should(await post(port, "héllo")).eql({ status: 200, text: "ok:héllo" });
  });

  it("refuses a declared oversized body with 413", async () => {
    const answer = await post(port, "x".repeat(1000));
    should(answer.status).equal(413);
  });

  it("refuses a chunked body that grows past the limit with 413", async () => {
    const answer = await post(port, "x".repeat(100_000), { "Transfer-Encoding": "chunked" });
    should(answer.status).equal(413);
  });

  it("refuses a body another middleware already consumed instead of hanging", async () => {
    const answer = await post(port, "abc", {}, "/consumed");
    should(answer.status).equal(400);
    should(answer.text).match(/already consumed/);
  });

  it("refuses compressed bodies with 415", async () => {
    should((await post(port, "abc", { "Content-Encoding": "gzip" })).status).equal(415);
  });
});

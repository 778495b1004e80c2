import { spawnSync } from "node:child_process";
import { join } from "node:path";
import should from "should";

/**
 * LMDB (the change tracker's embedded store) is a native module: a platform without its prebuilt binary must still
 * run every node that does not track changes. So loading the built nodes must not load it.
 */
describe("native modules", () => {
  it("the built nodes load without LMDB: it is loaded only when a get node tracks changes on this machine", () => {
    const root = join(__dirname, "..", "..");
    const script = `
      const Module = require("node:module");
      const load = Module._load;
      Module._load = function (request, ...rest) {
        if (request === "lmdb") throw new Error("lmdb was loaded");
        return load.call(this, request, ...rest);
      };
      const pkg = require("./package.json");
      for (const file of Object.values(pkg["node-red"].nodes)) require("./" + file);
      console.log("ok");
    `;
    const run = spawnSync(process.execPath, ["-e", script], { cwd: root, encoding: "utf8" });
    should(run.stderr).not.match(/lmdb was loaded/);
    should(run.status).equal(0);
    should(run.stdout.trim()).equal("ok");
  });
});

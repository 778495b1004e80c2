"use strict";
// A free TCP port on the loopback interface, for whatever a test, the benchmark or a script starts (Node-RED, the
// sandbox, an embedded PostgreSQL). Plain CommonJS, as flows.cjs, so the .mjs of bench/ and scripts/ and the
// TypeScript tests import the same file; the types are in free-port.d.cts.
const { createServer } = require("node:net");

/** Asks the system for a port (listen on 0), frees it again and answers its number. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

module.exports = { freePort };

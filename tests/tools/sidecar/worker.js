// The sidecar the tests run: every feature of the protocol, through the Node.js client.
"use strict";

const path = require("node:path");
const { HttpError, Sidecar, reply } = require(path.join(__dirname, "../../../tools/sidecar/node/microcore_sidecar.js"));

const VERSION = 1;
const sidecar = new Sidecar();

sidecar.route("GET", "/js/hello/{name}", async (req) => ({ hello: req.params.name, query: req.query, version: VERSION }));
sidecar.route("POST", "/js/echo", async (req) =>
  reply({ status: 201, headers: { "x-echo": req.headers["x-test"] || "" }, json: { data: req.data, body: req.body } }),
);
sidecar.route("GET", "/js/text", async () => reply({ text: "plain words" }));
sidecar.route("GET", "/js/fail", async () => {
  throw new HttpError(409, "conflict", "that clashes");
});
sidecar.route("GET", "/js/boom", async () => {
  throw new Error("kaboom");
});
sidecar.route("GET", "/js/slow", () => new Promise((resolve) => setTimeout(() => resolve({ late: true }), 5000)));
sidecar.route("GET", "/js/crash", async () => {
  console.error("crashing on purpose");
  process.exit(3);
});
sidecar.route("GET", "/js/ask", async (req) => sidecar.request("py.echo", { said: req.query.say }));
sidecar.route("GET", "/js/nobody", async () => sidecar.request("nobody.home", {}));
sidecar.respond("js.double", async (payload) => ({ value: payload.n * 2 }));
sidecar.subscribe("test.ping", async (event) => {
  await sidecar.publish("js.pong", { n: event.payload.n, version: VERSION });
});
sidecar.log("info", "worker registered", { version: VERSION });

if (process.env.UNDECLARED) sidecar.route("GET", "/js/secret", async () => ({}));

sidecar.start().catch((error) => {
  console.error(`start failed: ${error.message}`);
  process.exit(1);
});

/**
 * The Node peer of the HTTP load benchmark: `node:http`, hello world on
 * `GET /` (404 elsewhere).
 *
 *   node bench/load/node_http.mjs --port 0
 *
 * Prints `listening on HOST:PORT`, serves until SIGINT/SIGTERM, prints a
 * summary line and exits 0. Used by `bench/load/http_run.ts`.
 */

import http from "node:http";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "8000" } },
});

const HELLO = Buffer.from("Hello, World!");
const NOT_FOUND = Buffer.from("Not Found\n");
let requests = 0;

const server = http.createServer((req, res) => {
  requests++;
  const ok = req.url === "/";
  res.writeHead(ok ? 200 : 404, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": ok ? HELLO.length : NOT_FOUND.length,
  });
  res.end(ok ? HELLO : NOT_FOUND);
});

server.listen(Number(values.port), values.host, () => {
  const a = server.address();
  console.log(`listening on ${a.address}:${a.port}`);
});

const stop = () => {
  server.close(() => {
    console.log(`node_http: served ${requests} requests`);
    process.exit(0);
  });
  server.closeAllConnections();
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

/**
 * The `Deno.serve` peer of the HTTP load benchmark: hello world on `GET /`
 * (404 elsewhere).
 *
 *   deno run --allow-net bench/load/deno_http.ts --port 0
 *
 * Prints `listening on HOST:PORT`, serves until SIGINT/SIGTERM, prints a
 * summary line and exits 0. Used by `bench/load/http_run.ts`.
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "8000" } },
});

const HEADERS = { "content-type": "text/plain; charset=utf-8" };
let requests = 0;

const server = Deno.serve({
  hostname: values.host,
  port: Number(values.port),
  onListen: ({ hostname, port }) => console.log(`listening on ${hostname}:${port}`),
}, (req) => {
  requests++;
  // The path without building a URL: the target after the authority.
  const url = req.url;
  const path = url.slice(url.indexOf("/", url.indexOf("//") + 2));
  if (path === "/") return new Response("Hello, World!", { headers: HEADERS });
  return new Response("Not Found\n", { status: 404, headers: HEADERS });
});

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  void server.shutdown();
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
await server.finished;
Deno.removeSignalListener("SIGINT", stop);
Deno.removeSignalListener("SIGTERM", stop);
console.log(`deno_http: served ${requests} requests`);

/**
 * Heap held per idle HTTP connection: a `listenHttp()` server and `--conns`
 * bare loopback client sockets (default 2,000) in one process; after a forced
 * GC, the `heapUsed` delta between before and after the connections were
 * accepted, divided by them. The connections send nothing: what is measured
 * is what the engine keeps for a keep-alive connection between requests (its
 * `Connection`, `HttpConnection`, parser and listeners; the kernel's socket
 * buffers and the parser's off-heap offsets array are not in `heapUsed`).
 *
 *   deno run --allow-ffi --v8-flags=--expose-gc bench/http_idle_heap.ts [--conns 2000]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runUntilSettled } from "./_alloc.ts";
import { listenHttp } from "../http/mod.ts";
import { Reactor } from "../reactor/mod.ts";
import { AF_INET, close, connect as connectFd, encodeSockaddr, SOCK_STREAM, socket } from "../ffi/mod.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error("run with --v8-flags=--expose-gc");
  Deno.exit(2);
}
const { values: flags } = parseArgs({ args: Deno.args, options: { conns: { type: "string", default: "2000" } } });
const conns = Number(flags.conns);
if (!Number.isInteger(conns) || conns < 1) {
  console.error("--conns must be a positive integer");
  Deno.exit(2);
}

const reactor = new Reactor();
const server = listenHttp({ host: "127.0.0.1", port: 0, reactor }, (_req, res) => res.end("ok"));
const addr = encodeSockaddr({ host: "127.0.0.1", port: server.port });
const fds: number[] = [];

/** Opens `n` connections and runs the loop until the server has accepted them all. */
function open(n: number): void {
  const target = server.connectionCount + n;
  for (let i = 0; i < n; i++) {
    const fd = socket(AF_INET, SOCK_STREAM);
    connectFd(fd, addr.buf, addr.len, "the HTTP server");
    fds.push(fd);
    if (i % 20 === 19) reactor.runOnce(0); // keep the accept backlog short
  }
  for (let spins = 0; server.connectionCount < target; spins++) {
    if (spins > 2000) throw new Error(`only ${server.connectionCount} of ${target} connections came up`);
    reactor.runOnce(5);
  }
}

open(100); // warm up: the accept path, the first growth of the tables
gc();
gc();
const before = Deno.memoryUsage().heapUsed;
open(conns);
gc();
gc();
const after = Deno.memoryUsage().heapUsed;
console.log(
  `${conns} idle HTTP connections: ${Math.round((after - before) / conns)} bytes of heap each ` +
    `(heapUsed ${(before / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB)`,
);

for (const fd of fds) close(fd);
await runUntilSettled(reactor, server.shutdown(), "the server's shutdown");
reactor.close();

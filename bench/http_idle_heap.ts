/**
 * Heap held per idle HTTP connection: a `listenHttp()` server and `--conns`
 * bare loopback client sockets (default 2,000) in one process; after a forced
 * GC, the `heapUsed` delta between before and after the connections were
 * accepted and each had one `GET /` answered, divided by them. Each
 * connection then sits idle: what is measured is what the engine keeps for a
 * keep-alive connection between requests (its `Connection`, `HttpConnection`,
 * parser and listeners, and whatever its first request left behind; the
 * kernel's socket buffers and the parser's off-heap offsets array are not in
 * `heapUsed`), as issue 9's idle test has each echo connection echo once.
 *
 *   deno run --allow-ffi --v8-flags=--expose-gc bench/http_idle_heap.ts [--conns 2000]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runUntilSettled } from "./_alloc.ts";
import { listenHttp } from "../http/mod.ts";
import { Reactor } from "../reactor/mod.ts";
import {
  AF_INET,
  close,
  connect as connectFd,
  encodeSockaddr,
  MSG_NOSIGNAL,
  recv,
  send,
  SOCK_STREAM,
  socket,
} from "../ffi/mod.ts";

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
let answered = 0;
const server = listenHttp({ host: "127.0.0.1", port: 0, reactor }, (_req, res) => {
  answered++;
  res.end("ok");
});
const addr = encodeSockaddr({ host: "127.0.0.1", port: server.port });
const fds: number[] = [];
const REQUEST = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
const buf = new Uint8Array(4096);
const decoder = new TextDecoder();

/**
 * Opens `n` connections, runs the loop until the server has accepted them
 * all, then sends one `GET /` on each and reads its whole `200` response
 * (the connection stays open, idle, as a keep-alive client leaves it).
 */
function open(n: number): void {
  const target = server.connectionCount + n;
  const mine: number[] = [];
  for (let i = 0; i < n; i++) {
    const fd = socket(AF_INET, SOCK_STREAM);
    connectFd(fd, addr.buf, addr.len, "the HTTP server");
    fds.push(fd);
    mine.push(fd);
    if (i % 20 === 19) reactor.runOnce(0); // keep the accept backlog short
  }
  for (let spins = 0; server.connectionCount < target; spins++) {
    if (spins > 2000) throw new Error(`only ${server.connectionCount} of ${target} connections came up`);
    reactor.runOnce(5);
  }
  const want = answered + n;
  const got = new Map<number, string>(mine.map((fd) => [fd, ""]));
  for (const [i, fd] of mine.entries()) {
    if (send(fd, REQUEST, REQUEST.byteLength, MSG_NOSIGNAL) !== REQUEST.byteLength) throw new Error("short send");
    if (i % 20 === 19) reactor.runOnce(0);
  }
  for (let spins = 0; got.size > 0; spins++) {
    if (spins > 2000) throw new Error(`only ${want - got.size} of ${want} requests were answered`);
    reactor.runOnce(spins === 0 ? 0 : 5);
    for (const [fd, text] of got) {
      const r = recv(fd, buf);
      if (r === 0) throw new Error("the server closed a connection");
      if (r < 0) continue; // nothing yet
      const all = text + decoder.decode(buf.subarray(0, r));
      if (!all.startsWith("HTTP/1.1 200 ")) throw new Error(`unexpected response: ${all}`);
      if (/\r\n\r\nok$/.test(all)) got.delete(fd);
      else got.set(fd, all);
    }
  }
  if (answered !== want) throw new Error(`${answered} requests answered, ${want} expected`);
}

open(100); // warm up: the accept and request paths, the first growth of the tables
gc();
gc();
const before = Deno.memoryUsage().heapUsed;
open(conns);
gc();
gc();
const after = Deno.memoryUsage().heapUsed;
console.log(
  `${conns} idle HTTP connections, one request answered on each: ${
    Math.round((after - before) / conns)
  } bytes of heap each ` +
    `(heapUsed ${(before / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB)`,
);

for (const fd of fds) close(fd);
await runUntilSettled(reactor, server.shutdown(), "the server's shutdown");
reactor.close();

/**
 * The seeds' non-blocking client lesson: fetch the same pages concurrently
 * with fdloop's reactor client, then one after another with a plain blocking
 * client (blocking sockets through the same FFI layer), and compare.
 *
 *   deno run --allow-ffi examples/http_server.ts --port 8000 &
 *   deno run --allow-ffi examples/http_client.ts \
 *     http://127.0.0.1:8000/sleep?ms=1000 http://127.0.0.1:8000/sleep?ms=1000 http://127.0.0.1:8000/sleep?ms=1000
 *
 * Three requests to a 1-second endpoint take about 1 s with the reactor and
 * about 3 s blocking. Prints one line per mode and the speed-up; exits 1 if
 * any request fails, 2 on bad arguments.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { HttpClient } from "../http/mod.ts";
import { formatHostPort } from "../net/mod.ts";
import {
  close,
  connect as connectFd,
  encodeSockaddr,
  getaddrinfo,
  OSError,
  read,
  setNonBlocking,
  SOCK_STREAM,
  socket,
  write,
} from "../ffi/mod.ts";
import { Reactor } from "../reactor/mod.ts";
import { backendFlag, usageError } from "./_cli.ts";

const USAGE = `Usage: deno run --allow-ffi examples/http_client.ts URL... [--count N]

Fetches every URL N times (default 1) concurrently with the reactor client,
then the same requests one after another with a blocking client, and prints
both wall times and the speed-up.

Options:
  --count <n>               Fetch each URL this many times (default: 1)
  --backend <backend>       Selector of the reactor client: epoll, poll or select (default: auto)
  --help                    Show this help`;

let args;
try {
  args = parseArgs({
    args: Deno.args,
    options: { count: { type: "string", default: "1" }, backend: { type: "string" }, help: { type: "boolean" } },
    allowPositionals: true,
    strict: true,
  });
} catch (err) {
  console.error(usageError((err as Error).message));
  Deno.exit(2);
}
if (args.values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const backend = backendFlag(args.values.backend ?? "");
const count = Number(args.values.count);
if (!Number.isInteger(count) || count < 1) {
  console.error(usageError(`--count must be a positive integer, got ${JSON.stringify(args.values.count)}`));
  Deno.exit(2);
}
if (args.positionals.length === 0) {
  console.error(usageError("Give at least one URL"));
  Deno.exit(2);
}
let urls: URL[];
try {
  urls = args.positionals.flatMap((u) => Array.from({ length: count }, () => new URL(u)));
} catch (err) {
  console.error(usageError((err as Error).message));
  Deno.exit(2);
}

/** All requests at once on one thread: the reactor interleaves them. */
async function concurrent(): Promise<number[]> {
  const reactor = new Reactor({ backend });
  const client = new HttpClient({ reactor });
  const running = reactor.run();
  try {
    const responses = await Promise.all(urls.map((u) => client.request(u)));
    return await Promise.all(responses.map(async (r) => (await r.arrayBuffer(), r.status)));
  } finally {
    client.close();
    reactor.stop();
    await running;
    reactor.runOnce(0);
    reactor.close();
  }
}

/**
 * A blocking socket connected to `host:port`: each address the name resolves to, in the resolver's order
 * (RFC 6724), until one accepts, as the reactor client's dial (net/dial.ts) does. `localhost` may give ::1 first
 * to a server listening on 127.0.0.1 only, or the reverse. Throws the last address's error, naming the host:
 * `Cannot connect to localhost:8000 (127.0.0.1:8000): ECONNREFUSED …`.
 */
async function connectBlocking(host: string, port: number): Promise<number> {
  const addresses = await getaddrinfo(host); // the lookup; everything after it blocks the thread
  let last: Error = new OSError(0, "getaddrinfo", `Cannot resolve ${JSON.stringify(host)}`, "no address");
  for (const addr of addresses) {
    const target = formatHostPort(addr.address, port);
    const what = addr.address === host ? target : `${formatHostPort(host, port)} (${target})`;
    let fd = -1;
    try {
      const sa = encodeSockaddr({ host: addr.address, port });
      fd = socket(sa.family, SOCK_STREAM);
      setNonBlocking(fd, false);
      connectFd(fd, sa.buf, sa.len, what);
      return fd;
    } catch (err) {
      if (fd >= 0) close(fd);
      if (!(err instanceof OSError)) throw err;
      last = err;
    }
  }
  throw last;
}

/** One request on a blocking socket: connect, send, read until the server closes. Returns the status. */
async function blockingGet(url: URL): Promise<number> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = url.port === "" ? 80 : Number(url.port);
  const fd = await connectBlocking(host, port);
  try {
    const head = new TextEncoder().encode(
      `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`,
    );
    for (let at = 0; at < head.length;) at += write(fd, head.subarray(at));
    const buf = new Uint8Array(64 * 1024);
    let first = "";
    for (;;) {
      const n = read(fd, buf);
      if (n <= 0) break;
      if (first.length < 16) first += new TextDecoder().decode(buf.subarray(0, n));
    }
    return Number(first.split(" ")[1]);
  } finally {
    close(fd);
  }
}

/** The same requests one after another: each waits for the one before. */
async function sequential(): Promise<number[]> {
  const statuses: number[] = [];
  for (const u of urls) statuses.push(await blockingGet(u));
  return statuses;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

let t = performance.now();
let concurrentStatuses: number[];
try {
  concurrentStatuses = await concurrent();
} catch (err) {
  console.error(`http_client: ${(err as Error).message}`);
  Deno.exit(1);
}
const concurrentMs = performance.now() - t;
console.log(`concurrent (reactor client): ${urls.length} requests in ${seconds(concurrentMs)}`);

t = performance.now();
let sequentialStatuses: number[];
try {
  sequentialStatuses = await sequential();
} catch (err) {
  console.error(`http_client: ${(err as Error).message}`);
  Deno.exit(1);
}
const sequentialMs = performance.now() - t;
console.log(`sequential (blocking sockets): ${urls.length} requests in ${seconds(sequentialMs)}`);
console.log(`speed-up: ${(sequentialMs / concurrentMs).toFixed(2)}×`);
const bad = [...concurrentStatuses, ...sequentialStatuses].filter((s) => !(s >= 200 && s < 400));
if (bad.length > 0) {
  console.error(`http_client: ${bad.length} request(s) failed (statuses ${bad.join(", ")})`);
  Deno.exit(1);
}

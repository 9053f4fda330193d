/**
 * The load generator of `bench/load/run.ts`: `--conns` TCP connections, each
 * doing request/response ping-pong of `--size`-byte messages (one message in
 * flight per connection). Each reply is checked to be the bytes sent.
 *
 *   node bench/load/echo_load.mjs --port 8000 --conns 50 --warmup 1 --duration 5
 *   node bench/load/echo_load.mjs --port 8000 --conns 50 --control
 *
 * Timed mode: prints `connected` once every connection is up, `start` when
 * the measured window opens (after `--warmup` s of load) and
 * `end {"roundTrips":…,"seconds":…,"all":…}` when it closes, then exits 0.
 *
 * Control mode (`--control`, used by run.ts to interleave slices over
 * servers that all stay up): connects, prints `connected`, then idles with
 * nothing in flight until a line `run SECONDS` comes on stdin. It then loads
 * the server for that long, lets the messages in flight come back and prints
 * `done {"roundTrips":…,"seconds":…,"all":…}`: `roundTrips` completed within
 * the window, `all` including the ones drained after it. `quit` (or the end
 * of stdin) closes the connections and exits 0.
 */

import net from "node:net";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    conns: { type: "string", default: "50" },
    size: { type: "string", default: "64" },
    warmup: { type: "string", default: "1" },
    duration: { type: "string", default: "5" },
    control: { type: "boolean", default: false },
  },
});
const port = Number(values.port);
const conns = Number(values.conns);
const size = Number(values.size);
const warmupMs = Number(values.warmup) * 1000;
const durationMs = Number(values.duration) * 1000;
if (!(port > 0 && conns > 0 && size > 0 && durationMs > 0 && warmupMs >= 0)) {
  console.error("echo_load: need --port, and positive --conns, --size, --duration");
  process.exit(2);
}

const message = Buffer.alloc(size);
for (let i = 0; i < size; i++) message[i] = 0x41 + (i % 26);

let roundTrips = 0;
let running = false;
let inFlight = 0;
let connected = 0;
/** Called when the last message in flight came back after `running` went false. */
let onDrained = null;
const sockets = [];

function fail(text) {
  console.error(`echo_load: ${text}`);
  process.exit(1);
}

for (let i = 0; i < conns; i++) {
  const socket = net.connect({ host: values.host, port, noDelay: true });
  sockets.push(socket);
  let got = 0;
  socket.on("connect", () => {
    if (++connected === conns) ready();
  });
  socket.on("data", (chunk) => {
    for (let j = 0; j < chunk.length; j++) {
      if (chunk[j] !== message[(got + j) % size]) fail(`connection ${i}: wrong byte in a reply`);
    }
    got += chunk.length;
    if (got > size) fail(`connection ${i}: ${got} bytes came back for ${size} sent`);
    if (got === size) {
      got = 0;
      roundTrips++;
      if (running) socket.write(message);
      else if (--inFlight === 0 && onDrained) onDrained();
    }
  });
  socket.on("error", (err) => {
    if (connected >= 0) fail(`connection ${i}: ${err.message}`);
  });
}

/** Starts the ping-pong on every connection. */
function go() {
  running = true;
  inFlight = conns;
  for (const s of sockets) s.write(message);
}

/** Stops sending; resolves once every message in flight has come back. */
function halt() {
  running = false;
  return new Promise((resolve) => {
    if (inFlight === 0) resolve();
    else onDrained = resolve;
  });
}

function quit() {
  connected = -1; // errors from here on are ours
  for (const s of sockets) s.destroy();
  process.exit(0);
}

function ready() {
  clearTimeout(connectTimer);
  console.log("connected");
  if (values.control) {
    const lines = createInterface({ input: process.stdin });
    let busy = Promise.resolve();
    lines.on("line", (line) => {
      const m = /^run ([\d.]+)$/.exec(line.trim());
      if (line.trim() === "quit") busy.then(quit);
      else if (m) busy = busy.then(() => slice(Number(m[1]) * 1000, "done"));
      else if (line.trim() !== "") fail(`unknown command ${JSON.stringify(line)}`);
    });
    lines.on("close", () => busy.then(quit));
    return;
  }
  go();
  setTimeout(() => {
    running = false; // slice() restarts it
    halt().then(() => slice(durationMs, "end", true)).then(quit);
  }, warmupMs);
}

/** Loads the server for `ms`, drains, and prints `tag {…}`. */
function slice(ms, tag, announce = false) {
  return new Promise((resolve) => {
    const first = roundTrips;
    const startTime = process.hrtime.bigint();
    if (announce) console.log("start");
    go();
    setTimeout(async () => {
      const seconds = Number(process.hrtime.bigint() - startTime) / 1e9;
      const inWindow = roundTrips - first;
      await halt();
      console.log(`${tag} ${JSON.stringify({ roundTrips: inWindow, seconds, all: roundTrips - first })}`);
      resolve();
    }, ms);
  });
}

const connectTimer = setTimeout(() => fail(`only ${connected} of ${conns} connections were up within 10 s`), 10_000);

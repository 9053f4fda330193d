/**
 * The load generator of `bench/load/run.ts`: `--conns` TCP connections, each
 * doing request/response ping-pong of `--size`-byte messages (one message in
 * flight per connection), for `--warmup` then `--duration` seconds.
 *
 *   node bench/load/echo_load.mjs --port 8000 --conns 32 --duration 5
 *
 * Prints `connected` once every connection is up, `start` when the
 * measured window opens and `end {"roundTrips":…,"seconds":…}` when it
 * closes, then exits 0. Each reply is checked to be the bytes sent.
 */

import net from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    conns: { type: "string", default: "32" },
    size: { type: "string", default: "64" },
    warmup: { type: "string", default: "1" },
    duration: { type: "string", default: "5" },
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
let running = true;
let connected = 0;
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
    if (++connected === conns) begin();
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
    }
  });
  socket.on("error", (err) => {
    if (running) fail(`connection ${i}: ${err.message}`);
  });
}

function begin() {
  clearTimeout(connectTimer);
  console.log("connected");
  for (const s of sockets) s.write(message);
  setTimeout(() => {
    const startCount = roundTrips;
    const startTime = process.hrtime.bigint();
    console.log("start");
    setTimeout(() => {
      const seconds = Number(process.hrtime.bigint() - startTime) / 1e9;
      console.log(`end ${JSON.stringify({ roundTrips: roundTrips - startCount, seconds })}`);
      running = false;
      for (const s of sockets) s.destroy();
      process.exit(0);
    }, durationMs);
  }, warmupMs);
}

const connectTimer = setTimeout(() => fail(`only ${connected} of ${conns} connections were up within 10 s`), 10_000);

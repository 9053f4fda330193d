/**
 * Heap bytes allocated per echo round trip through `Connection`: the method
 * of `bench/dispatch_alloc.ts` (a forced GC, then `heapUsed` before and
 * after a batch of work) extended to a whole round trip on loopback inside
 * one process: a `listen()` server running the echo handler of
 * `examples/echo.ts` (`data` → `write()`, `pause()` when it returns false,
 * `resume()` on `drain`), and clients pinging it with 64-byte messages, one
 * in flight per connection.
 *
 * Two kinds of client:
 * - **raw**: a plain socket on `reactor.addReader()` doing one `recv` and one
 *   `send` (the bare dispatch path, which `dispatch_alloc.ts` shows
 *   allocates nothing), so the figure is the server side's alone;
 * - **Connection**: `connect()` with a `data` listener, so the figure is
 *   both sides' (about twice one side's).
 *
 * Each is driven three ways: `runOnce()` in a loop, `await run()` and
 * `runSync()`, with 1 and with 50 connections (the load benchmark's).
 * The target of issue 9 is 0 bytes per round trip on the echo path.
 *
 *   deno run --allow-ffi --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64 \
 *     bench/echo_alloc.ts [--round-trips 4000] [--samples 7]
 *
 * Prints a Markdown table; with `-A` (the metadata reads `/proc` and runs
 * `node`/`cc --version`) it also writes the figures as JSON to
 * `bench/results/echo_alloc.json` (`--out` to change it):
 *
 *   deno run -A --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64 bench/echo_alloc.ts
 *
 * The young generation must hold a whole sample (see `bench/_alloc.ts`): with
 * V8's default, a scavenge within a sample made `heapUsed` read 33–55 B per
 * round trip at 1 connection where the truth is 420–470.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { allocationGc, type LoopMode, PingPong, rawClients, sampleBatches } from "./_alloc.ts";
import { median, runMeta } from "./_meta.ts";
import { writeResults } from "./results.ts";
import { connect, type Connection, listen, type Server } from "../net/mod.ts";
import { Reactor } from "../reactor/mod.ts";
import { close } from "../ffi/mod.ts";

const { gc, newSpaceBytes } = allocationGc();

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    "round-trips": { type: "string", default: "4000" },
    samples: { type: "string", default: "7" },
    size: { type: "string", default: "64" },
    out: { type: "string", default: new URL("results/echo_alloc.json", import.meta.url).pathname },
  },
});
const ROUND_TRIPS = Number(flags["round-trips"]);
const SAMPLES = Number(flags.samples);
const SIZE = Number(flags.size);
if (!(Number.isInteger(ROUND_TRIPS) && ROUND_TRIPS > 0 && Number.isInteger(SAMPLES) && SAMPLES > 0 && SIZE > 0)) {
  console.error("--round-trips, --samples and --size must be positive integers");
  Deno.exit(2);
}

const message = new Uint8Array(SIZE).fill(0x61);

type Mode = LoopMode;
type ClientKind = "raw" | "Connection";

/** An echo server and `conns` clients on one reactor; `batch(n)` does n round trips in all. */
interface Rig {
  batch(n: number): Promise<void>;
  done(): Promise<void>;
}

function rig(kind: ClientKind, mode: Mode, conns: number): Rig {
  const reactor = new Reactor();
  let accepted = 0;
  const server: Server = listen({ host: "127.0.0.1", port: 0, reactor }, (conn) => {
    accepted++;
    // The echo handler of examples/echo.ts.
    conn.on("data", (chunk) => {
      if (!conn.write(chunk)) conn.pause();
    });
    conn.on("drain", () => conn.resume());
    conn.on("error", () => {});
  });

  const pingPong = new PingPong(reactor, mode);
  const rawFds: number[] = [];
  const clients: Connection[] = [];
  if (kind === "raw") {
    rawFds.push(...rawClients(pingPong, server.port, conns, message, SIZE));
  } else {
    for (let i = 0; i < conns; i++) {
      const c = connect({ host: "127.0.0.1", port: server.port, reactor });
      clients.push(c);
      const replied = pingPong.add(() => c.write(message));
      let got = 0;
      c.on("data", (chunk) => {
        got += chunk.byteLength;
        if (got < SIZE) return;
        got = 0;
        replied();
      });
      c.on("error", (err) => {
        throw err;
      });
    }
  }
  for (let spins = 0; accepted < conns || clients.some((c) => c.connecting); spins++) {
    if (spins > 1000) throw new Error(`only ${accepted} of ${conns} connections came up`);
    reactor.runOnce(10);
  }

  return {
    batch: (n) => pingPong.batch(n),
    async done(): Promise<void> {
      for (const fd of rawFds) {
        reactor.removeReader(fd);
        close(fd);
      }
      for (const c of clients) c.destroy();
      const closing = server.close({ closeConnections: true });
      while (reactor.runOnce(0) > 0) {
        // Flush the close events.
      }
      await closing;
      reactor.close();
    },
  };
}

interface Row {
  client: ClientKind;
  side: string;
  mode: Mode;
  conns: number;
  /** Median over samples of heap bytes allocated per round trip. */
  bytesPerRoundTrip: number;
  min: number;
  max: number;
  /** Samples in which heapUsed went down (a GC ran mid-sample): those read low. */
  gcDuringSamples: number;
  roundTripsPerSecond: number;
}

const rows: Row[] = [];
console.log(
  `### Heap bytes allocated per echo round trip (${SIZE}-byte messages, one in flight per connection; median of ` +
    `${SAMPLES} × ${ROUND_TRIPS.toLocaleString("en-US")} round trips after a forced GC)\n`,
);
console.log("| client | counts | mode | connections | bytes/round trip (min–max) | round trips/s in-process |");
console.log("| --- | --- | --- | ---: | ---: | ---: |");
for (const kind of ["raw", "Connection"] as const) {
  for (const mode of ["runOnce", "run", "runSync"] as const) {
    for (const conns of [1, 50]) {
      const r = rig(kind, mode, conns);
      await r.batch(ROUND_TRIPS); // warm up: let V8 optimise the path
      await r.batch(ROUND_TRIPS);
      const { perOp: perRt, rates, gcs } = await sampleBatches(gc, r.batch, ROUND_TRIPS, SAMPLES);
      const rate = Math.max(...rates);
      await r.done();
      const row: Row = {
        client: kind,
        side: kind === "raw" ? "server only" : "server + client",
        mode,
        conns,
        bytesPerRoundTrip: median(perRt),
        min: Math.min(...perRt),
        max: Math.max(...perRt),
        gcDuringSamples: gcs,
        roundTripsPerSecond: rate,
      };
      rows.push(row);
      const modeText = mode === "run" ? "`await run()`" : mode === "runSync" ? "`runSync()`" : "`runOnce()` loop";
      console.log(
        `| ${kind} | ${row.side} | ${modeText} | ${conns} | ${row.bytesPerRoundTrip.toFixed(1)} (${
          row.min.toFixed(1)
        }–${row.max.toFixed(1)})${gcs ? ` [GC in ${gcs} samples: reads low]` : ""} | ${
          Math.round(rate).toLocaleString("en-US")
        } |`,
      );
    }
  }
}

// Writing the JSON needs --allow-write; the metadata reads /proc and runs `node --version` and `cc --version`
// (-A). Asked for only when granted, so a run with --allow-ffi alone neither prompts nor fails.
const write = await Deno.permissions.query({ name: "write", path: flags.out });
if (write.state === "granted") {
  const settings = { roundTrips: ROUND_TRIPS, samples: SAMPLES, size: SIZE, newSpaceBytes };
  await writeResults(flags.out, { ...runMeta(), settings, rows });
} else {
  console.error(`not writing ${flags.out}: run with -A to save the figures`);
}

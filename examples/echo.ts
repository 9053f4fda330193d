/**
 * An echo server: every byte a client sends comes back, in order, whatever
 * the size and however many clients.
 *
 *   deno run --allow-ffi examples/echo.ts --port 8000
 *   printf 'hello\n' | nc -q1 127.0.0.1 8000
 *
 * Prints `listening on HOST:PORT` once it accepts, serves until SIGINT or
 * SIGTERM, then closes the listener and every connection, prints a summary
 * line and exits 0.
 *
 * @module
 */

import { type Connection, formatHostPort, listen, Reactor } from "../mod.ts";
import { backendFlag, catchSignals, LOOP_FLAGS, openOrExit, parseFlags, portFlag, runUntilSignal } from "./_cli.ts";

const flags = parseFlags("Usage: deno run --allow-ffi examples/echo.ts [options]", {
  host: { type: "string", default: "127.0.0.1", help: "Address to listen on" },
  port: { type: "string", default: "8000", help: "Port (0 = pick a free port)" },
  ...LOOP_FLAGS,
});

const reactor = new Reactor({ backend: backendFlag(flags.backend) });
let connections = 0;
let bytes = 0;
const started = performance.now();

// The echo, as three functions shared by every connection: a listener runs with its
// connection as `this`, so a connection that only waits holds no closure of its own
// (two closures and their context would cost ~150 bytes of heap per connection).

/** Echoes a chunk, and stops reading while the peer is not reading its echo (backpressure). */
function echoChunk(this: Connection, chunk: Uint8Array): void {
  bytes += chunk.byteLength;
  if (!this.write(chunk)) this.pause();
}

/** The peer caught up: read again. */
function resumeReading(this: Connection): void {
  this.resume();
}

/** A reset peer closes only its own connection. */
function ignoreError(): void {}

const port = portFlag(flags.port);
const server = openOrExit("echo", () =>
  listen({ host: flags.host, port, reactor }, (conn) => {
    connections++;
    conn.on("data", echoChunk);
    conn.on("drain", resumeReading);
    conn.on("error", ignoreError);
  }));

const address = server.address.family === "unix"
  ? server.address.path
  : formatHostPort(server.address.address, server.address.port);
catchSignals(); // before the line a script waits for: a signal sent at once must not kill us
console.log(`listening on ${address}`);

await runUntilSignal(reactor, flags.sync, () => {
  server.close({ closeConnections: true });
});
const seconds = (performance.now() - started) / 1000;
console.log(
  `echo: served ${connections} connections, echoed ${bytes} bytes in ${seconds.toFixed(1)} s (${reactor.selector.name}${
    flags.sync ? ", sync" : ""
  })`,
);
reactor.close();

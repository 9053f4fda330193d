/**
 * A UDP echo server: every datagram goes back to its sender.
 *
 *   deno run --allow-ffi examples/udp_echo.ts --port 8001
 *
 * Prints `listening on HOST:PORT`, serves until SIGINT/SIGTERM, prints a
 * summary line and exits 0.
 *
 * @module
 */

import { bindUdp, formatAddress, Reactor } from "../mod.ts";
import { backendFlag, catchSignals, LOOP_FLAGS, openOrExit, parseFlags, portFlag, runUntilSignal } from "./_cli.ts";

const flags = parseFlags("Usage: deno run --allow-ffi examples/udp_echo.ts [options]", {
  host: { type: "string", default: "127.0.0.1", help: "Address to bind" },
  port: { type: "string", default: "8001", help: "Port (0 = pick a free port)" },
  ...LOOP_FLAGS,
});

const reactor = new Reactor({ backend: backendFlag(flags.backend) });
let datagrams = 0;
const port = portFlag(flags.port);
const sock = openOrExit("udp_echo", () =>
  bindUdp({ host: flags.host, port, reactor }, (bytes, from) => {
    datagrams++;
    sock.send(bytes, from);
  }));
sock.on("error", (err) => console.error(`udp_echo: ${err.message}`));
catchSignals(); // before the line a script waits for: a signal sent at once must not kill us
console.log(`listening on ${formatAddress(sock.address)}`);

await runUntilSignal(reactor, flags.sync, () => sock.close());
console.log(`udp_echo: echoed ${datagrams} datagrams`);
reactor.close();

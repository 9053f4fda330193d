/**
 * One reactor, several listening ports: each accepted peer is logged with the
 * port it came in on, and everything is echoed.
 *
 *   deno run --allow-ffi examples/multi_port.ts --ports 8000,8006
 *
 * Prints one `listening on HOST:PORT` line per port, then
 * `accepted PEER on port PORT` per connection; exits 0 on SIGINT/SIGTERM.
 *
 * @module
 */

import { formatAddress, listen, Reactor, type Server } from "../mod.ts";
import { backendFlag, catchSignals, LOOP_FLAGS, openOrExit, parseFlags, portFlag, runUntilSignal } from "./_cli.ts";

const flags = parseFlags("Usage: deno run --allow-ffi examples/multi_port.ts [options]", {
  host: { type: "string", default: "127.0.0.1", help: "Address to listen on" },
  ports: { type: "string", default: "8000,8006", help: "Comma-separated ports (0 = a free port)" },
  ...LOOP_FLAGS,
});

const reactor = new Reactor({ backend: backendFlag(flags.backend) });
const servers: Server[] = [];
let connections = 0;

// Check every port before listening on any.
const ports = flags.ports.split(",").map((text) => portFlag(text.trim()));
// Before the first line a script waits for: a signal sent at once must not kill us.
catchSignals();
for (const port of ports) {
  const server = openOrExit("multi_port", () =>
    listen({ host: flags.host, port, reactor }, (conn) => {
      connections++;
      console.log(`accepted ${formatAddress(conn.remoteAddress!)} on port ${server.port}`);
      // The backpressured echo of echo.ts, inline so this file reads top to bottom (echo.ts
      // shares its listeners between connections instead, to hold no closure per connection).
      conn.on("data", (chunk) => {
        if (!conn.write(chunk)) conn.pause();
      });
      conn.on("drain", () => conn.resume());
      conn.on("error", () => {});
    }));
  servers.push(server);
  console.log(`listening on ${formatAddress(server.address)}`);
}

await runUntilSignal(reactor, flags.sync, () => {
  for (const s of servers) s.close({ closeConnections: true });
});
console.log(`multi_port: served ${connections} connections on ${servers.length} ports`);
reactor.close();

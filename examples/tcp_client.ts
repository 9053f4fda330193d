/**
 * A line client: connects, sends each line typed on stdin, prints what the
 * server sends back. At end of input it half-closes, prints the rest of the
 * replies and exits 0 when the server closes.
 *
 *   deno run --allow-ffi examples/echo.ts --port 8000 &
 *   deno run --allow-ffi examples/tcp_client.ts --port 8000
 *
 * @module
 */

import { connect, formatAddress, OSError, Reactor } from "../mod.ts";
import { read, setNonBlocking, WOULD_BLOCK } from "../ffi/mod.ts";
import { backendFlag, parseFlags, portFlag, runUntilSignal } from "./_cli.ts";

const flags = parseFlags("Usage: deno run --allow-ffi examples/tcp_client.ts [options]", {
  host: { type: "string", default: "127.0.0.1", help: "Server address (numeric or localhost)" },
  port: { type: "string", default: "8000", help: "Server port" },
  timeout: { type: "string", default: "5000", help: "Connect timeout in ms" },
  backend: {
    type: "string",
    default: "poll",
    help: "Selector: epoll, poll or select (poll also watches files on stdin)",
  },
});

const reactor = new Reactor({ backend: backendFlag(flags.backend) });
const stdinBuf = new Uint8Array(16 * 1024);
let exitCode = 0;

const conn = connect({ host: flags.host, port: portFlag(flags.port), timeout: Number(flags.timeout), reactor });
function onStdin(): void {
  const n = read(0, stdinBuf);
  if (n === WOULD_BLOCK) return;
  if (n === 0) {
    reactor.removeReader(0);
    conn.end(); // half-close: the server's replies still arrive
    return;
  }
  if (!conn.write(stdinBuf.subarray(0, n))) {
    // The server is slow: stop reading stdin until the connection drains.
    reactor.removeReader(0);
    conn.once("drain", () => reactor.addReader(0, onStdin));
  }
}

conn.on("connect", () => {
  console.error(`connected to ${formatAddress(conn.remoteAddress!)}`);
  setNonBlocking(0, true);
  reactor.addReader(0, onStdin);
});
conn.on("data", (chunk) => {
  Deno.stdout.writeSync(chunk);
});
conn.on("error", (err) => {
  console.error(`tcp_client: ${err.message}`);
  exitCode = err instanceof OSError ? 1 : 2;
});
conn.on("close", () => {
  reactor.removeReader(0);
  reactor.stop();
});

try {
  await runUntilSignal(reactor, false, () => conn.destroy());
} finally {
  setNonBlocking(0, false);
}
reactor.close();
Deno.exit(exitCode);

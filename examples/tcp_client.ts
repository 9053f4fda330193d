/**
 * A line client: connects, sends each line typed on stdin, prints what the
 * server sends back. At end of input it half-closes, prints the rest of the
 * replies and exits 0 when the server closes (or on SIGINT/SIGTERM, or when
 * the reader of its stdout goes away). Exits 1 when the connection fails
 * (refused, timed out, a name that does not resolve), 2 on a bad flag.
 *
 *   deno run --allow-ffi examples/echo.ts --port 8000 &
 *   deno run --allow-ffi examples/tcp_client.ts --port 8000
 *
 * @module
 */

import { connect, formatAddress, OSError, Reactor } from "../mod.ts";
import { read, WOULD_BLOCK } from "../ffi/mod.ts";
import {
  backendFlag,
  intFlag,
  openOrExit,
  parseFlags,
  portFlag,
  runUntilSignal,
  stdinNonBlocking,
  writeStdout,
} from "./_cli.ts";

const flags = parseFlags("Usage: deno run --allow-ffi examples/tcp_client.ts [options]", {
  host: { type: "string", default: "127.0.0.1", help: "Server address (numeric or localhost)" },
  port: { type: "string", default: "8000", help: "Server port" },
  timeout: { type: "string", default: "5000", help: "Connect timeout in ms" },
  backend: {
    type: "string",
    default: "poll",
    help: "Selector: epoll, poll or select (epoll cannot watch a file on stdin: poll then)",
  },
});

const port = portFlag(flags.port);
const timeout = intFlag("timeout", flags.timeout, 1, 3_600_000);
/**
 * The reactor, checked first against stdin: epoll refuses a regular file or
 * /dev/null (EPERM), where poll reports it always readable (which is right),
 * so then it is poll, as in stdin_monitor.ts.
 */
function newReactor(): Reactor {
  const reactor = new Reactor({ backend: backendFlag(flags.backend) });
  try {
    reactor.addReader(0, () => {});
    reactor.removeReader(0);
    return reactor;
  } catch (err) {
    if (!(err instanceof OSError) || err.code !== "EPERM") throw err;
    reactor.close();
    console.error("stdin is a file epoll cannot watch (EPERM); using the poll backend");
    return new Reactor({ backend: "poll" });
  }
}

const reactor = newReactor();
const stdinBuf = new Uint8Array(16 * 1024);
let exitCode = 0;
/** Puts stdin's O_NONBLOCK back as it was; set once stdin is made non-blocking (on connect). */
let restoreStdin = () => {};

const conn = openOrExit("tcp_client", () => connect({ host: flags.host, port, timeout, reactor }));
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
  // Shared with the parent shell: non-blocking only while we run (runUntilSignal has caught the signals by now).
  restoreStdin = stdinNonBlocking();
  reactor.addReader(0, onStdin);
});
conn.on("data", (chunk) => {
  // Nobody reads our output any more (`| head -1`): end the session.
  if (!writeStdout(chunk)) conn.destroy();
});
conn.on("error", (err) => {
  console.error(`tcp_client: ${err.message}`);
  // Refused, timed out, or a name that does not resolve (GaiError): the connection failed, not the flags.
  exitCode = 1;
});
conn.on("close", () => {
  reactor.removeReader(0);
  reactor.stop();
});

try {
  await runUntilSignal(reactor, false, () => conn.destroy());
} finally {
  restoreStdin();
}
reactor.close();
Deno.exit(exitCode);

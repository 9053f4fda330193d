/**
 * One loop, two sources: lines typed on stdin (fd 0, watched by the reactor)
 * and a timer ticking every second.
 *
 *   deno run --allow-ffi examples/stdin_monitor.ts
 *
 * Prints `stdin: <line>` for each line, `tick N` each interval; exits 0 at
 * end of input (Ctrl-D) or on SIGINT/SIGTERM; exits 1 if stdin cannot be read.
 *
 * @module
 */

import { OSError, Reactor } from "../mod.ts";
import { read, WOULD_BLOCK } from "../ffi/mod.ts";
import { backendFlag, catchSignals, LOOP_FLAGS, parseFlags, runUntilSignal, stdinNonBlocking } from "./_cli.ts";

const flags = parseFlags("Usage: deno run --allow-ffi examples/stdin_monitor.ts [options]", {
  interval: { type: "string", default: "1000", help: "Tick interval in ms" },
  ...LOOP_FLAGS,
});
const interval = Number(flags.interval);
if (!(interval >= 1)) {
  console.error(`--interval must be a number of ms ≥ 1, got ${JSON.stringify(flags.interval)}`);
  Deno.exit(2);
}

let reactor = new Reactor({ backend: backendFlag(flags.backend) });
const decoder = new TextDecoder();
const buf = new Uint8Array(4096);
let pending = "";
let ticks = 0;
let lines = 0;
let failed = false;

const tick = () => console.log(`tick ${++ticks}`);
let timer = reactor.callEvery(interval, tick);

function finish(): void {
  timer.cancel();
  reactor.removeReader(0);
  reactor.stop();
}

function onStdin(): void {
  let n: number;
  try {
    n = read(0, buf);
  } catch (err) {
    // e.g. EISDIR for a directory, EIO for a hung-up terminal: it would fail again on every turn.
    console.error(`stdin_monitor: ${err instanceof Error ? err.message : err}`);
    failed = true;
    finish();
    return;
  }
  if (n === WOULD_BLOCK) return;
  if (n === 0) {
    pending += decoder.decode(); // an incomplete UTF-8 sequence at the end becomes U+FFFD
    if (pending) {
      console.log(`stdin: ${pending}`);
      lines++;
    }
    finish();
    return;
  }
  pending += decoder.decode(buf.subarray(0, n), { stream: true });
  let nl: number;
  while ((nl = pending.indexOf("\n")) >= 0) {
    console.log(`stdin: ${pending.slice(0, nl)}`);
    lines++;
    pending = pending.slice(nl + 1);
  }
}

try {
  reactor.addReader(0, onStdin);
} catch (err) {
  // epoll refuses regular files and /dev/null (EPERM); poll reports them always readable, which is right.
  if (!(err instanceof OSError) || err.code !== "EPERM") throw err;
  console.error("stdin is a file epoll cannot watch (EPERM); using the poll backend");
  timer.cancel();
  reactor.close();
  reactor = new Reactor({ backend: "poll" });
  timer = reactor.callEvery(interval, tick);
  reactor.addReader(0, onStdin);
}

// A terminal or pipe on fd 0 is shared with the parent: make it non-blocking only while we run, and leave its
// flag as we found it. Signals are caught first, so that one arriving now ends the loop, not the process.
catchSignals();
const restoreStdin = stdinNonBlocking();
try {
  await runUntilSignal(reactor, flags.sync, finish);
} finally {
  restoreStdin();
}
console.log(`stdin_monitor: ${lines} lines, ${ticks} ticks`);
reactor.close();
if (failed) Deno.exitCode = 1;

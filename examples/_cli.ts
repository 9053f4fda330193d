/**
 * What the examples share: flag parsing with `--help`, one-line errors,
 * and running a reactor until SIGINT/SIGTERM in either run mode.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type BackendName, BACKENDS, OSError, type Reactor } from "../mod.ts";
import { setNonBlocking } from "../ffi/mod.ts";

/** A flag of an example: its type, default and help text. */
export interface Flag {
  type: "string" | "boolean";
  default?: string | boolean;
  help: string;
}

/**
 * Parses `Deno.args` against `flags`; prints usage and exits 0 on `--help`,
 * prints the problem (one line) and exits 2 on a bad flag.
 */
export function parseFlags<F extends Record<string, Flag>>(
  usage: string,
  flags: F,
): { [K in keyof F]: F[K]["type"] extends "boolean" ? boolean : string } {
  const help = () => {
    const lines = Object.entries(flags).map(([name, f]) => {
      const arg = f.type === "string" ? ` <${name}>` : "";
      const def = f.default !== undefined && f.default !== false ? ` (default: ${f.default})` : "";
      return `  --${name}${arg}`.padEnd(28) + f.help + def;
    });
    return `${usage}\n\nOptions:\n${lines.join("\n")}\n  --help                    Show this help`;
  };
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        ...Object.fromEntries(Object.entries(flags).map(([k, f]) => [k, { type: f.type }])),
        help: { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      console.log(help());
      Deno.exit(0);
    }
    const out: Record<string, unknown> = {};
    for (const [k, f] of Object.entries(flags)) {
      out[k] = (values as Record<string, unknown>)[k] ?? f.default ?? (f.type === "boolean" ? false : "");
    }
    return out as { [K in keyof F]: F[K]["type"] extends "boolean" ? boolean : string };
  } catch (err) {
    console.error(usageError((err as Error).message));
    Deno.exit(2);
  }
}

/** A bad-flag message on one line, pointing at `--help` (scripts read the first line of stderr). */
export function usageError(message: string): string {
  // Node's parseArgs adds, when positionals are allowed, a hint about `--` that quotes the flag unevenly: not ours.
  const first = message.replace(/\. To specify a positional argument[^]*$/, "");
  return `${first.replace(/\s*\n\s*/g, " ").trim()} (see --help)`;
}

/**
 * Runs `open` (a listen or a bind). A failure the user can act on ends the
 * program with one line on stderr, not a stack trace: exit code 1 for an OS
 * error (`EADDRINUSE`, `EACCES`, `EADDRNOTAVAIL` …), 2 for a bad value (a
 * host that is neither numeric nor `localhost`).
 */
export function openOrExit<T>(program: string, open: () => T): T {
  try {
    return open();
  } catch (err) {
    if (err instanceof OSError) {
      console.error(`${program}: ${err.message}`);
      Deno.exit(1);
    }
    if (err instanceof TypeError || err instanceof RangeError) {
      console.error(`${program}: ${err.message}`);
      Deno.exit(2);
    }
    throw err;
  }
}

/**
 * Writes all of `bytes` to stdout. Returns false, writing nothing, once
 * stdout is a pipe whose reader has gone (`| head -1`): `Deno.stdout` throws
 * `BrokenPipe` there (`console.log` drops the line silently).
 */
export function writeStdout(bytes: Uint8Array): boolean {
  try {
    for (let at = 0; at < bytes.byteLength;) at += Deno.stdout.writeSync(bytes.subarray(at));
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.BrokenPipe) return false;
    throw err;
  }
}

/**
 * The flags every example that runs a loop takes: `--backend` and `--sync`.
 * Spread them into an example's flag table (`{ ...LOOP_FLAGS, port: … }`).
 */
export const LOOP_FLAGS = {
  backend: { type: "string", default: "auto", help: "Selector: epoll, poll or select" },
  sync: { type: "boolean", help: "Use the blocking runSync() loop" },
} as const satisfies Record<string, Flag>;

/** Checks a `--backend` value. */
export function backendFlag(value: string): BackendName | undefined {
  if (value === "" || value === "auto") return undefined;
  if (!(BACKENDS as readonly string[]).includes(value)) {
    console.error(`Unknown backend ${JSON.stringify(value)}: use one of ${BACKENDS.join(", ")}`);
    Deno.exit(2);
  }
  return value as BackendName;
}

/** Checks a port flag: an integer 0–65535. */
export function portFlag(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) {
    console.error(`Port must be an integer from 0 to 65535, got ${JSON.stringify(value)}`);
    Deno.exit(2);
  }
  return port;
}

/** Checks an integer flag in `[min, max]`, or exits 2 naming it. */
export function intFlag(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    console.error(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
    Deno.exit(2);
  }
  return n;
}

/** The ways out of a program that skip a `finally`: `Deno.exit()` and the end (`unload`), an uncaught error. */
const EXIT_EVENTS = ["unload", "error", "unhandledrejection"] as const;

/**
 * Makes stdin (fd 0) non-blocking, and returns the function that puts its
 * `O_NONBLOCK` flag back as it was before: call it in a `finally`.
 *
 * The flag belongs to the open file description, which fd 0 shares with the
 * parent shell and every other process on the same terminal or pipe: left
 * set, the shell's next read fails with `EAGAIN`; cleared where it was set,
 * a process that relied on it blocks. The flag is also put back on the ways
 * out that skip a `finally` (`Deno.exit()`, the end of the program, an
 * uncaught error); SIGINT and SIGTERM end the program through
 * {@linkcode runUntilSignal} once {@linkcode catchSignals} has run, so call
 * that first. Only SIGKILL (or another signal nobody catches) leaves the flag set.
 *
 * @throws {OSError} `EBADF` when fd 0 is closed.
 */
export function stdinNonBlocking(): () => void {
  const was = setNonBlocking(0, true);
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    for (const e of EXIT_EVENTS) globalThis.removeEventListener(e, restore);
    if (was) return;
    try {
      setNonBlocking(0, false);
    } catch (err) {
      // fd 0 was closed meanwhile: there is no flag left to put back.
      if (!(err instanceof OSError)) throw err;
    }
  };
  for (const e of EXIT_EVENTS) globalThis.addEventListener(e, restore);
  return restore;
}

const SIGNALS = ["SIGINT", "SIGTERM"] as const;
let signalsCaught = false;
let signalsReceived = 0;
let signalHook: (() => void) | undefined;

function onProcessSignal(): void {
  signalsReceived++;
  signalHook?.();
}

/**
 * Catches SIGINT and SIGTERM from now on, so that they end the program
 * through {@linkcode runUntilSignal} instead of killing it. A server calls it
 * before it prints `listening on`: a script that signals it as soon as it
 * reads that line must still get the summary line and exit code 0.
 *
 * The listeners stay until the process exits (they do not keep it alive):
 * removing the last one would give the signal its default action back, and
 * a second Ctrl-C while the program shuts down would kill it half-way.
 */
export function catchSignals(): void {
  if (signalsCaught) return;
  signalsCaught = true;
  for (const s of SIGNALS) Deno.addSignalListener(s, onProcessSignal);
}

/** Calls `hook` on the next SIGINT/SIGTERM (one that already came does not count); `undefined` ignores them. */
export function onNextSignal(hook: (() => void) | undefined): void {
  catchSignals();
  signalHook = hook;
}

/**
 * Runs `reactor` until SIGINT or SIGTERM (or one that came since
 * {@linkcode catchSignals}), then calls `onSignal` (which should close what
 * the program opened) and stops the reactor. Later signals are ignored
 * unless the program hands them to {@linkcode onNextSignal}.
 *
 * With `sync`, the loop is `runSync()`: it blocks the thread, and returns when
 * a signal interrupts its wait, so Deno can deliver the signal to the listener
 * here; the loop then goes on or ends.
 */
export async function runUntilSignal(reactor: Reactor, sync: boolean, onSignal: () => void): Promise<void> {
  let stopping = false;
  const handler = () => {
    if (stopping) return;
    stopping = true;
    onSignal();
    reactor.stop();
  };
  onNextSignal(handler);
  if (signalsReceived > 0) handler();
  try {
    if (sync) {
      // runSync() returns "stopped" after stop() (from a callback or the handler),
      // "interrupted" when a signal broke its wait, and "yielded" every 100 ms (a
      // signal that arrives while callbacks run breaks no wait): let Deno deliver it.
      while (reactor.runSync({ sliceMs: 100 }) !== "stopped") {
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      // Flush what onSignal scheduled (closing connections emits their events).
      reactor.runOnce(0);
    } else {
      await reactor.run();
      reactor.runOnce(0);
    }
  } finally {
    if (signalHook === handler) signalHook = undefined;
  }
}

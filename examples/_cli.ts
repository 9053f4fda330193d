/**
 * What the examples share: flag parsing with `--help`, and running a reactor
 * until SIGINT/SIGTERM in either run mode.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type BackendName, BACKENDS, type Reactor } from "../mod.ts";

/** A flag of an example: its type, default and help text. */
export interface Flag {
  type: "string" | "boolean";
  default?: string | boolean;
  help: string;
}

/**
 * Parses `Deno.args` against `flags`; prints usage and exits 0 on `--help`,
 * prints the problem and exits 2 on a bad flag.
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
    console.error(`${(err as Error).message}\n\n${help()}`);
    Deno.exit(2);
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

/**
 * Runs `reactor` until SIGINT or SIGTERM, then calls `onSignal` (which should
 * close what the program opened) and stops the reactor.
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
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const s of signals) Deno.addSignalListener(s, handler);
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
    for (const s of signals) Deno.removeSignalListener(s, handler);
  }
}

/**
 * The harness of the example tests: an example spawned as its own
 * `deno run --allow-ffi` process, its output collected as it arrives, with
 * bounded waits for a line, for `listening on HOST:PORT` and for the exit.
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);
const EXAMPLES = new URL("examples/", ROOT);
const DENO = Deno.execPath();

/** How long a child may take to print its `listening on` line. */
export const START_TIMEOUT_MS = 10_000;
/** How long a child may take to exit after a signal or end of input. */
export const EXIT_TIMEOUT_MS = 10_000;

/** A spawned example with its stdout and stderr collected as they arrive. */
export class Example implements AsyncDisposable {
  readonly name: string;
  readonly proc: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  #stdoutDone = false;
  #waiters = new Set<() => void>();
  readonly #pumps: Promise<void>;
  #status: Deno.CommandStatus | undefined;
  readonly done: Promise<Deno.CommandStatus>;

  constructor(name: string, args: string[], stdin: "piped" | "null" = "null") {
    this.name = name;
    this.proc = new Deno.Command(DENO, {
      args: ["run", "--allow-ffi", new URL(name, EXAMPLES).pathname, ...args],
      cwd: ROOT.pathname,
      stdin,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#pumps = Promise.all([
      this.#pump(this.proc.stdout, (s) => (this.stdout += s)).finally(() => {
        this.#stdoutDone = true;
        this.#notify();
      }),
      this.#pump(this.proc.stderr, (s) => (this.stderr += s)),
    ]).then(() => {});
    this.done = this.#pumps.then(() => this.proc.status).then((s) => (this.#status = s));
  }

  async #pump(stream: ReadableStream<Uint8Array>, append: (s: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      append(decoder.decode(chunk, { stream: true }));
      this.#notify();
    }
    append(decoder.decode());
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** The complete lines printed on stdout so far. */
  get lines(): string[] {
    const all = this.stdout.split("\n");
    all.pop(); // an unfinished line, or "" after the last newline
    return all;
  }

  /** What the child printed, for failure messages. */
  get transcript(): string {
    return `${this.name}: stdout=${JSON.stringify(this.stdout.slice(-2000))} stderr=${
      JSON.stringify(this.stderr.slice(-2000))
    }`;
  }

  /**
   * Waits until `check(lines)` returns something other than `undefined`, and
   * returns it. Fails after `timeoutMs` or when stdout ends first.
   */
  waitFor<R>(what: string, check: (lines: string[]) => R | undefined, timeoutMs = START_TIMEOUT_MS): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const waiter = () => {
        const r = check(this.lines);
        if (r !== undefined) {
          finish();
          resolve(r);
        } else if (this.#stdoutDone) {
          finish();
          reject(new Error(`${this.name} ended its output before ${what}; ${this.transcript}`));
        }
      };
      const finish = () => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}; ${this.transcript}`));
      }, timeoutMs);
      this.#waiters.add(waiter);
      waiter();
    });
  }

  /** Waits for `count` `listening on HOST:PORT` lines and returns the ports. */
  listening(count = 1): Promise<number[]> {
    return this.waitFor(`${count} "listening on" line(s)`, (lines) => {
      const ports = lines.flatMap((l) => {
        const m = /^listening on (?:127\.0\.0\.1|\[?::1\]?|[\w.:[\]-]+):(\d+)$/.exec(l);
        return m ? [Number(m[1])] : [];
      });
      return ports.length >= count ? ports : undefined;
    });
  }

  /** Waits for the exit status; kills the child with SIGKILL and fails if it takes longer than `timeoutMs`. */
  async exit(timeoutMs = EXIT_TIMEOUT_MS): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
    const r = await Promise.race([this.done, timeout]);
    clearTimeout(timer);
    if (r === "timeout") {
      this.#kill("SIGKILL");
      await this.done;
      throw new Error(`${this.name} did not exit within ${timeoutMs} ms; ${this.transcript}`);
    }
    return r;
  }

  /** Sends `signal` unless the child has already exited. */
  signal(signal: Deno.Signal): void {
    this.#kill(signal);
  }

  #kill(signal: Deno.Signal): void {
    if (this.#status !== undefined) return;
    try {
      this.proc.kill(signal);
    } catch {
      // Exited in between.
    }
  }

  /** Kills the child if it is still running and waits until its pipes are closed. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#status === undefined) this.#kill("SIGKILL");
    try {
      await this.proc.stdin?.close();
    } catch {
      // Not piped, or already closed.
    }
    await this.done;
  }
}

/** Runs an example to completion with `args` (for flag handling): exit code, stdout, stderr. */
export async function runToExit(
  name: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  await using child = new Example(name, args);
  const status = await child.exit();
  return { code: status.code, stdout: child.stdout, stderr: child.stderr };
}

/** Rejects after `ms` with `message` unless `promise` settles first; calls `onTimeout` before rejecting. */
export async function within<T>(ms: number, message: string, promise: Promise<T>, onTimeout?: () => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(`Timed out after ${ms} ms: ${message}`));
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What the load benchmarks share: running a command for its output, pinning
 * a process to a CPU with `taskset`, and a process's CPU time from `/proc`.
 *
 * @module
 */

/** stdout and stderr of `cmd args`, trimmed; "" if it cannot run. */
export function commandOutput(cmd: string, args: string[]): string {
  try {
    const out = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
    return (new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr)).trim();
  } catch {
    return "";
  }
}

/** Clock ticks per second of `/proc` CPU times. */
export const CLK_TCK: number = Number(commandOutput("getconf", ["CLK_TCK"])) || 100;
/** Whether `taskset` can pin processes here. */
export const haveTaskset: boolean = commandOutput("taskset", ["-c", "0", "echo", "ok"]) === "ok";
/** CPUs of the machine. */
export const cpus: number = navigator.hardwareConcurrency;

/** `argv` run on `cpu` (through `taskset` when it exists; CPU 0 on a one-CPU machine). */
export function pinned(cpu: string, argv: string[]): [string, string[]] {
  if (!haveTaskset) return [argv[0], argv.slice(1)];
  return ["taskset", ["-c", cpus < 2 ? "0" : cpu, ...argv]];
}

/** user and system CPU seconds of a whole process (every thread), from `/proc/PID/stat`. */
export function cpuTimes(pid: number): { user: number; sys: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name may hold spaces and parentheses: fields start after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of proc(5) (utime, stime) are at 11 and 12 counting from field 3.
  return { user: Number(fields[11]) / CLK_TCK, sys: Number(fields[12]) / CLK_TCK };
}

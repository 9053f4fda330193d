/**
 * select(2) cannot watch an fd ≥ 1024; poll(2) and epoll(7) can: the seeds'
 * FD_SETSIZE lesson.
 *
 *   deno run --allow-ffi examples/select_limit.ts [--fds 1100] [--rounds 5]
 *
 * `select()` takes `fd_set` bitmaps of FD_SETSIZE (1024) bits, so fd 1024 has
 * no bit to set: C programs that call `FD_SET(1024, …)` anyway write past the
 * bitmap and smash their stack. fdloop's select backend refuses such an fd in
 * `register()`, before touching memory, with an error that names FD_SETSIZE.
 *
 * The program opens Unix socket pairs until it holds `--fds` descriptors (and
 * moves the last one to fd 1024 or above with `fcntl(F_DUPFD)` if the count
 * alone does not get there), writes one byte so that one fd is ready, and
 * registers every fd for reading with each backend:
 *
 *   select: refused fd 1024: Cannot register fd 1024 with the select backend: select() handles only fds below FD_SETSIZE (1024); use the epoll or poll backend
 *   select: registered 1002 of 1100 fds (98 refused), one wait 97.0 µs
 *   poll: registered 1100 of 1100 fds, one wait 105.1 µs
 *   epoll: registered 1100 of 1100 fds, one wait 2.78 µs
 *
 * "One wait" is one `select(0)` call (timeout 0, one fd ready) on the
 * selector as registered: the median over `--rounds` rounds of 200 waits,
 * after a warm-up. select and poll hand the kernel every watched fd on each
 * call, so their wait grows with the number registered; epoll keeps the set
 * in the kernel and returns only the ready ones (`deno task bench:scaling`
 * draws that curve). Closes everything and exits 0; 2 on a bad flag; 1 if
 * the fds cannot be opened (raise `ulimit -n`).
 *
 * @module
 */

import { BACKENDS, createSelector, EVENT_READ, type Selector } from "../mod.ts";
import { AF_UNIX, close, dupAtLeast, FD_SETSIZE, SOCK_STREAM, socketpair, write } from "../ffi/mod.ts";
import { intFlag, parseFlags } from "./_cli.ts";

const flags = parseFlags(
  "Usage: deno run --allow-ffi examples/select_limit.ts [options]\n\n" +
    `Opens --fds descriptors (socket pairs), at least one of them ≥ FD_SETSIZE (${FD_SETSIZE}), registers them\n` +
    "with the select, poll and epoll backends, and prints which refuse (select, with its error) and how long\n" +
    "one wait (timeout 0) takes on each. Needs `ulimit -n` above --fds plus a few.",
  {
    fds: { type: "string", default: "1100", help: "Descriptors to open and register (at least 2)" },
    rounds: { type: "string", default: "5", help: "Timing rounds of 200 waits each; the median is printed" },
  },
);

const count = intFlag("fds", flags.fds, 2, 1_000_000);
const rounds = intFlag("rounds", flags.rounds, 1, 1000);
const WAITS_PER_ROUND = 200;
const WARM_UP = 300; // the first ~200 calls of an FFI symbol are slow until V8 optimises them

// ---------------------------------------------------------------- open the fds

const fds: number[] = [];
function closeAll(): void {
  for (const fd of fds) close(fd);
  fds.length = 0;
}

try {
  while (fds.length < count) {
    const [a, b] = socketpair(AF_UNIX, SOCK_STREAM);
    fds.push(a);
    if (fds.length < count) fds.push(b);
    else close(b);
  }
  // Few fds asked for: move the last one up, so that an fd ≥ FD_SETSIZE exists anyway.
  const last = fds.length - 1;
  if (fds[last] < FD_SETSIZE) {
    const high = dupAtLeast(fds[last], FD_SETSIZE);
    close(fds[last]);
    fds[last] = high;
  }
} catch (err) {
  const opened = fds.length;
  closeAll();
  console.error(
    `Cannot open ${count} fds (got ${opened}): ${(err as Error).message}. Raise the limit (ulimit -n) or lower --fds.`,
  );
  Deno.exit(1);
}

// fds[0]'s peer is fds[1] (the pairs are pushed in order): one byte makes fds[0] readable.
write(fds[1], new Uint8Array([1]));
const highest = Math.max(...fds);
console.log(
  `select_limit: opened ${fds.length} fds (Unix socket pairs), highest fd ${highest}, FD_SETSIZE ${FD_SETSIZE}; ` +
    "1 fd ready",
);

// ---------------------------------------------------------------- register and time

/** Median time of one `select(0)` in µs: `rounds` rounds of `WAITS_PER_ROUND` waits, after a warm-up. */
function timeOneWait(sel: Selector<null>): number {
  for (let i = 0; i < WARM_UP; i++) sel.select(0);
  const perWait: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < WAITS_PER_ROUND; i++) sel.select(0);
    perWait.push(((performance.now() - t0) * 1000) / WAITS_PER_ROUND);
  }
  perWait.sort((a, b) => a - b);
  const mid = perWait.length >> 1;
  return perWait.length % 2 ? perWait[mid] : (perWait[mid - 1] + perWait[mid]) / 2;
}

function formatMicros(us: number): string {
  return us < 10 ? us.toFixed(2) : us.toFixed(1);
}

// select first, then poll and epoll (the reverse of BACKENDS, best last), so the refusal leads.
for (const name of [...BACKENDS].reverse()) {
  const sel = createSelector<null>(name);
  try {
    let registered = 0;
    let refused = 0;
    for (const fd of fds) {
      try {
        sel.register(fd, EVENT_READ, null);
        registered++;
      } catch (err) {
        if (refused++ === 0) console.log(`${name}: refused fd ${fd}: ${(err as Error).message}`);
      }
    }
    const ready = sel.select(0);
    const us = timeOneWait(sel);
    console.log(
      `${name}: registered ${registered} of ${fds.length} fds${refused ? ` (${refused} refused)` : ""}, ` +
        `one wait ${formatMicros(us)} µs` + (ready === 1 ? "" : ` (${ready} ready, expected 1)`),
    );
  } finally {
    sel.close();
  }
}

closeAll();
console.log(`closed ${count} fds`);

/**
 * `Selector.select(0)` per backend with N idle registered fds and one ready
 * fd: how the cost of a non-blocking wait grows with the registration count.
 * epoll's wait should stay flat (it only walks its ready list), poll and
 * select grow with N (they ask every fd).
 *
 *   deno bench --allow-ffi --allow-read bench/selector_bench.ts
 *
 * The idle fds are the read end of one pipe and duplicates of it (their
 * writer stays open, so they never report end of file); the ready fd is a pipe
 * holding one unread byte. The select backend needs every registered fd below
 * FD_SETSIZE (1024), so the registered fds are opened first, on the lowest
 * numbers, and the writers are moved above 1024. If this process already holds
 * too many low fds for N = 1000, that select bench is skipped and says why.
 *
 * @module
 */

import { close, dupAtLeast, F_GETFD, FD_SETSIZE, pipe, sym, write } from "../ffi/mod.ts";
import { BACKENDS, createSelector } from "../reactor/default.ts";
import { EVENT_READ, type Selector } from "../reactor/selector.ts";

const SIZES = [10, 100, 1000];
const MAX = Math.max(...SIZES);

const fds: number[] = [];

/** How many fd numbers below FD_SETSIZE were taken before this module opened any. */
const lowBefore = (() => {
  let n = 0;
  for (let fd = 0; fd < FD_SETSIZE; fd++) if (sym.fcntl(fd, F_GETFD, 0) >= 0) n++;
  return n;
})();

/** A pipe whose read end stays on its low number and whose write end moves to ≥ 2048. */
function lowReaderHighWriter(): [number, number] {
  const [r, w] = pipe();
  const high = dupAtLeast(w, 2048);
  close(w);
  fds.push(r, high);
  return [r, high];
}

// The ready fd first, so it has a low number and select's bitmap scan for small N stays small.
const [ready, readyWriter] = lowReaderHighWriter();
write(readyWriter, new Uint8Array([1])); // never read: level-triggered, always ready

const [idle0] = lowReaderHighWriter();
const idle = [idle0];
while (idle.length < MAX) {
  const fd = dupAtLeast(idle0, 0);
  fds.push(fd);
  idle.push(fd);
}

const selectors: Selector<number>[] = [];

addEventListener("unload", () => {
  for (const sel of selectors) sel.close();
  for (const fd of fds) close(fd);
});

for (const n of SIZES) {
  for (const backend of BACKENDS) {
    const registered = [...idle.slice(0, n), ready];
    const tooHigh = backend === "select" && registered.some((fd) => fd >= FD_SETSIZE);
    const name = `${backend}`;
    const group = `select(0) with ${n} idle fds + 1 ready`;
    if (tooHigh) {
      // deno bench does not list ignored benches, so say it out loud as well.
      const why = `needs ${registered.length} registered fds below FD_SETSIZE (${FD_SETSIZE}), ` +
        `but this process already held ${lowBefore} of the numbers below ${FD_SETSIZE}`;
      console.log(`note: ${group}: ${backend} skipped: ${why}`);
      Deno.bench({ name: `${name} (skipped: ${why})`, group, ignore: true, fn() {} });
      continue;
    }
    const sel = createSelector<number>(backend);
    selectors.push(sel);
    for (const fd of registered) sel.register(fd, EVENT_READ, fd);
    Deno.bench({
      name,
      group,
      baseline: backend === "epoll",
      warmup: 1000,
      fn() {
        const k = sel.select(0);
        if (k !== 1 || sel.readyKeys[0].fd !== ready) throw new Error(`${backend}: select(0) returned ${k}`);
      },
    });
  }
}

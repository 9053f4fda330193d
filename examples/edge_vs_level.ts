/**
 * Level-triggered vs edge-triggered epoll: the seeds' `EPOLLET` lesson, run
 * on the kernel mechanism itself (the `Selector` API, no reactor).
 *
 *   deno run --allow-ffi examples/edge_vs_level.ts [--turns 5] [--bytes 12] [--chunk 4]
 *
 * One epoll instance watches two Unix socket pairs for reading: one
 * registered level-triggered (`EVENT_READ`), the other edge-triggered
 * (`EVENT_READ | EVENT_EDGE`, i.e. `EPOLLET`). A few bytes are written once
 * to each, and the loop turns `--turns` times with `select(0)` (a wait with a
 * zero timeout, so the program finishes at once):
 *
 *   level-triggered: reported 5 of 5 turns
 *   edge-triggered: reported 1 of 5 turns
 *
 * Level-triggered means "the fd is readable": it is reported on every turn
 * while unread bytes remain. Edge-triggered means "new bytes arrived": it is
 * reported once per arrival. Then the rule that follows, with a handler that
 * reads `--chunk` bytes per report:
 *
 *   level-triggered, partial reads: reported 3 of 5 turns, read 12 of 12 bytes, 0 left unread
 *   edge-triggered, partial reads: reported 1 of 5 turns, read 4 of 12 bytes, 8 left unread
 *   edge-triggered, partial reads, after a later write of 1 byte: reported 1 of 5 turns, read 8 of 13 bytes, 5 left unread
 *   edge-triggered, read until WOULD_BLOCK: reported 1 of 5 turns, read 12 of 12 bytes in 4 reads (the last WOULD_BLOCK), 0 left unread
 *
 * Under edge triggering, a handler that stops reading before `EAGAIN`
 * (`WOULD_BLOCK`) strands the rest: epoll stays silent about those bytes
 * until the peer writes again. So an edge-triggered handler reads until
 * `WOULD_BLOCK`; or use level-triggered mode (fdloop's default), which
 * forgives a partial read at the cost of a report per turn.
 *
 * Edge-triggered mode exists only in epoll: the poll and select backends are
 * level-triggered and refuse `EVENT_EDGE` (the last line prints their error).
 * Exits 0; 2 on a bad flag.
 *
 * @module
 */

import { createSelector, EVENT_EDGE, EVENT_READ, type Selector } from "../mod.ts";
import { AF_UNIX, close, read, SOCK_STREAM, socketpair, WOULD_BLOCK, write } from "../ffi/mod.ts";
import { intFlag, parseFlags } from "./_cli.ts";

const flags = parseFlags(
  "Usage: deno run --allow-ffi examples/edge_vs_level.ts [options]\n\n" +
    "Shows how often epoll reports an unread socket in level-triggered and in edge-triggered (EPOLLET)\n" +
    "mode, and why an edge-triggered handler must read until WOULD_BLOCK (EAGAIN). Edge-triggered mode is\n" +
    "epoll-only: the poll and select backends are level-triggered and refuse EVENT_EDGE.",
  {
    turns: { type: "string", default: "5", help: "Loop turns (select(0) calls) per scenario" },
    bytes: { type: "string", default: "12", help: "Bytes written once to each socket" },
    chunk: { type: "string", default: "4", help: "Bytes a partial-read handler reads per report" },
  },
);

const turns = intFlag("turns", flags.turns, 1, 1000);
const bytes = intFlag("bytes", flags.bytes, 2, 65536);
const chunk = intFlag("chunk", flags.chunk, 1, bytes - 1);

/** One watched socket: the end the selector reads, the end the "peer" writes, and what went through. */
interface Watched {
  label: string;
  readEnd: number;
  writeEnd: number;
  written: number;
  read: number;
  /** Read calls made (including the one that returned WOULD_BLOCK). */
  reads: number;
  /** How many turns reported the fd. */
  reported: number;
}

const buf = new Uint8Array(65536);
const opened: number[] = [];

function watch(sel: Selector<Watched>, label: string, events: number): Watched {
  const [readEnd, writeEnd] = socketpair(AF_UNIX, SOCK_STREAM);
  opened.push(readEnd, writeEnd);
  const w: Watched = { label, readEnd, writeEnd, written: 0, read: 0, reads: 0, reported: 0 };
  sel.register(readEnd, events, w);
  return w;
}

/** The peer writes `n` bytes (once). */
function send(w: Watched, n: number): void {
  const sent = write(w.writeEnd, buf.fill(0x61, 0, n), n);
  if (sent !== n) throw new Error(`Short write to fd ${w.writeEnd}: ${sent} of ${n} bytes`);
  w.written += n;
}

/** One read of at most `n` bytes; returns what `read` returned (WOULD_BLOCK when empty). */
function readSome(w: Watched, n: number): number {
  const got = read(w.readEnd, buf, n);
  w.reads++;
  if (got > 0) w.read += got;
  return got;
}

/** Turns the loop `turns` times with `select(0)`, calling `handle` for each reported fd; counts the reports of `watched`. */
function spin(sel: Selector<Watched>, watched: Watched[], handle: (w: Watched) => void): void {
  for (const w of watched) w.reported = 0;
  for (let turn = 0; turn < turns; turn++) {
    const n = sel.select(0);
    for (let i = 0; i < n; i++) {
      const w = sel.readyKeys[i].data;
      w.reported++;
      handle(w);
    }
  }
}

function reportedLine(w: Watched): string {
  return `reported ${w.reported} of ${turns} turns`;
}

function readLine(w: Watched): string {
  return `read ${w.read} of ${w.written} bytes`;
}

function unreadLine(w: Watched): string {
  return `${w.written - w.read} left unread`;
}

const sel = createSelector<Watched>("epoll");
try {
  console.log(
    `edge_vs_level: one epoll instance, Unix socket pairs, ${bytes} bytes written once to each, ${turns} turns of select(0)`,
  );

  // 1. Nothing is read: level-triggered repeats, edge-triggered tells once.
  console.log("\n1. Read nothing");
  {
    const lt = watch(sel, "level-triggered", EVENT_READ);
    const et = watch(sel, "edge-triggered", EVENT_READ | EVENT_EDGE);
    send(lt, bytes);
    send(et, bytes);
    spin(sel, [lt, et], () => {});
    for (const w of [lt, et]) {
      console.log(`${w.label}: ${reportedLine(w)}`);
      sel.unregister(w.readEnd);
    }
  }

  // 2. A handler that reads `chunk` bytes per report, never until WOULD_BLOCK.
  console.log(`\n2. A handler that reads ${chunk} bytes per report (a partial read)`);
  {
    const lt = watch(sel, "level-triggered", EVENT_READ);
    const et = watch(sel, "edge-triggered", EVENT_READ | EVENT_EDGE);
    send(lt, bytes);
    send(et, bytes);
    spin(sel, [lt, et], (w) => void readSome(w, chunk));
    console.log(`${lt.label}, partial reads: ${reportedLine(lt)}, ${readLine(lt)}, ${unreadLine(lt)}`);
    console.log(`${et.label}, partial reads: ${reportedLine(et)}, ${readLine(et)}, ${unreadLine(et)}`);
    console.log(`  (the ${et.written - et.read} unread bytes are there, but no new data arrived: no new edge)`);
    sel.unregister(lt.readEnd);

    // Only a later write makes a new edge; the handler again reads just `chunk` bytes of it.
    send(et, 1);
    spin(sel, [et], (w) => void readSome(w, chunk));
    console.log(
      `${et.label}, partial reads, after a later write of 1 byte: ${reportedLine(et)}, ${readLine(et)}, ${
        unreadLine(et)
      }`,
    );
    sel.unregister(et.readEnd);
  }

  // 3. The edge-triggered rule: read until WOULD_BLOCK (EAGAIN), with the same small buffer.
  console.log(`\n3. The edge-triggered rule: read until WOULD_BLOCK (EAGAIN), ${chunk} bytes per read`);
  {
    const et = watch(sel, "edge-triggered", EVENT_READ | EVENT_EDGE);
    send(et, bytes);
    spin(sel, [et], (w) => {
      while (readSome(w, chunk) !== WOULD_BLOCK);
    });
    console.log(
      `${et.label}, read until WOULD_BLOCK: ${reportedLine(et)}, ${readLine(et)} in ${et.reads} reads ` +
        `(the last WOULD_BLOCK), ${unreadLine(et)}`,
    );
    sel.unregister(et.readEnd);
  }

  // Edge-triggered mode is epoll's alone.
  console.log("\n4. poll and select have no edge-triggered mode");
  for (const name of ["poll", "select"] as const) {
    const other = createSelector<null>(name);
    const [a, b] = socketpair(AF_UNIX, SOCK_STREAM);
    try {
      other.register(a, EVENT_READ | EVENT_EDGE, null);
      console.log(`${name}: accepted EVENT_EDGE (unexpected)`);
    } catch (err) {
      console.log(`${name}: level-triggered only: ${(err as Error).message}`);
    } finally {
      other.close();
      close(a);
      close(b);
    }
  }
} finally {
  sel.close();
  for (const fd of opened) close(fd);
}

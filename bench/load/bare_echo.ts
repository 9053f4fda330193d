/**
 * The floor of a TypeScript echo server on this machine: `bench/c/echo_baseline.c`
 * written with fdloop's `ffi/` bindings and nothing above them. No reactor, no
 * `Connection`, no emitter: one level-triggered epoll set, non-blocking
 * `accept4`, and one `recv` and one `send` per readable event into a shared
 * 64 KiB buffer. `bench/load/run.ts` runs it as the "bare" server, so the
 * user-space CPU that Deno's FFI calls and a JIT-compiled loop cost by
 * themselves sits beside fdloop's (the framework's overhead is the
 * difference) and beside C's (the FFI's overhead is that difference).
 *
 *   deno run --allow-ffi bench/load/bare_echo.ts --port 0
 *
 * Prints `listening on 127.0.0.1:PORT`; on SIGINT/SIGTERM prints a summary
 * line and exits 0. As in the C server, a short send drops the rest: the
 * benchmark's clients keep one message in flight, so it never happens there.
 *
 * @module
 */

import {
  accept,
  AF_INET,
  bind,
  close,
  encodeSockaddr,
  EPOLL_CTL_ADD,
  EPOLL_EVENT_SIZE,
  EPOLL_EVENT_STRIDE,
  epollCreate,
  epollCtl,
  EPOLLIN,
  epollWait,
  getSockName,
  IPPROTO_TCP,
  listen,
  MSG_NOSIGNAL,
  recv,
  send,
  setSockOptInt,
  SO_REUSEADDR,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  socket,
  SOL_SOCKET,
  TCP_NODELAY,
  WOULD_BLOCK,
} from "../../ffi/mod.ts";

const portArg = Deno.args.indexOf("--port");
const port = portArg >= 0 ? Number(Deno.args[portArg + 1]) : 8000;
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`bare_echo: --port must be 0 to 65535, got ${Deno.args[portArg + 1]}`);
  Deno.exit(2);
}

// Handling the stop signals makes them interrupt epoll_wait (EINTR) instead of killing the process.
let stop = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, () => stop = true);

const MAX_EVENTS = 64;
const ep = epollCreate();
const events = new Uint8Array(MAX_EVENTS * EPOLL_EVENT_SIZE);
const eventsPtr = Deno.UnsafePointer.of(events);
const words = new Uint32Array(events.buffer);
// epoll_event: u32 events at byte 0, then u64 data (the fd in its low word) at byte 4 (x86_64) or 8 (aarch64).
const DATA = EPOLL_EVENT_STRIDE === 3 ? 1 : 2;
const ctl = new Uint8Array(16);
const ctlWords = new Uint32Array(ctl.buffer);
const buf = new Uint8Array(64 * 1024);

function watch(fd: number): void {
  ctlWords[0] = EPOLLIN;
  ctlWords[DATA] = fd;
  epollCtl(ep, EPOLL_CTL_ADD, fd, ctl);
}

const lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
setSockOptInt(lfd, SOL_SOCKET, SO_REUSEADDR, 1);
const addr = encodeSockaddr({ host: "127.0.0.1", port });
bind(lfd, addr.buf, addr.len, `127.0.0.1:${port}`);
listen(lfd, 1024);
watch(lfd);
const bound = getSockName(lfd);
console.log(`listening on 127.0.0.1:${"port" in bound ? bound.port : port}`);

let connections = 0;
let bytes = 0;
// The loop blocks the JS thread, so Deno runs the signal listener only when the loop yields: after an idle
// 100 ms wait, after a wait a signal interrupted (the signal may reach another thread and interrupt nothing),
// and every 4096 waits under load.
const yieldToDeno = () => new Promise((resolve) => setTimeout(resolve, 0));
let waits = 0;
while (!stop) {
  const n = epollWait(ep, eventsPtr, MAX_EVENTS, 100);
  if (n <= 0 || (++waits & 4095) === 0) await yieldToDeno();
  for (let i = 0; i < n; i++) {
    const fd = words[i * EPOLL_EVENT_STRIDE + DATA];
    if (fd === lfd) {
      for (let c = accept(lfd); c !== WOULD_BLOCK; c = accept(lfd)) {
        setSockOptInt(c, IPPROTO_TCP, TCP_NODELAY, 1);
        watch(c);
        connections++;
      }
      continue;
    }
    let r: number;
    try {
      r = recv(fd, buf);
    } catch {
      r = 0; // a reset peer: close it, as the C server does
    }
    if (r === WOULD_BLOCK) continue;
    if (r <= 0) {
      close(fd); // also leaves the epoll set
      continue;
    }
    bytes += r;
    try {
      send(fd, buf, r, MSG_NOSIGNAL);
    } catch {
      close(fd);
    }
  }
}
console.log(`bare_echo: served ${connections} connections, echoed ${bytes} bytes`);

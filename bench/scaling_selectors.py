#!/usr/bin/env python3
"""CPython's side of `deno task bench:scaling`: the cost of one `select(0)`
with 1 ready fd among N idle registered fds, for `selectors.EpollSelector`,
`PollSelector` and `SelectSelector`.

The method is the one bench/scaling.ts uses for fdloop:
- the idle fds are both ends of N/2 AF_UNIX socketpairs (an idle end has
  nothing to read, so registering both halves the fds a size needs);
- one more socketpair has a byte written into it, and the end holding the
  byte is registered last: exactly one fd is ready (level-triggered, never
  read, so it stays ready);
- the ready pair is opened first, so select() sees low fd numbers at small N;
- each sample calls `select(0)` for --warmup-ms, then times as many calls
  as should take --sample-ms at the rate the warm-up saw, and reports ns per
  call; bench/scaling.ts takes the median over rounds.

RLIMIT_NOFILE is raised with `resource.setrlimit` towards the hard limit when
the largest size needs it. SelectSelector cannot watch an fd >= FD_SETSIZE
(1024): its `select()` raises ValueError, which is recorded and ends the
select series.

Prints one JSON object on stdout; progress goes nowhere (bench/scaling.ts
prints its own). Run standalone with --help for the options.
"""

import argparse
import gc
import json
import platform
import resource
import selectors
import socket
import sys
import time

KINDS = {
    "epoll": "EpollSelector",
    "poll": "PollSelector",
    "select": "SelectSelector",
}


def raise_nofile(needed):
    """Raises the soft RLIMIT_NOFILE to cover `needed` fds where the hard limit allows; says what it did."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = {"soft": soft, "hard": hard}
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"before": before, "after": {"soft": soft, "hard": hard}}


def open_fds(max_n):
    """The ready pair (byte written) and max_n idle fds: both ends of max_n/2 socketpairs."""
    ready_reader, ready_writer = socket.socketpair()
    ready_writer.send(b"x")
    idle = []
    while len(idle) < max_n:
        a, b = socket.socketpair()
        idle.extend((a, b))
    return ready_reader, ready_writer, idle


def sample(sel, sample_ms, warmup_ms):
    """(ns per select(0) call, calls timed): warm up for warmup_ms, then time ~sample_ms worth of calls."""
    select = sel.select
    clock = time.perf_counter_ns
    warm = 0
    w0 = clock()
    while True:
        select(0)
        warm += 1
        spent = clock() - w0
        if spent >= warmup_ms * 1e6 and warm >= 3:
            break
    calls = max(3, round(sample_ms * 1e6 / (spent / warm)))
    ready = select(0)
    if len(ready) != 1:
        raise RuntimeError(f"select(0) reported {len(ready)} ready fds, expected 1")
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        for _ in range(calls):
            select(0)
        elapsed = clock() - start
    finally:
        if gc_was:
            gc.enable()
    return elapsed / calls, calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="16,64,256,1024,4096,16384", help="comma-separated N values")
    parser.add_argument("--sample-ms", type=float, default=15, help="length of one sample in ms")
    parser.add_argument("--warmup-ms", type=float, default=3, help="untimed calls before each sample, in ms")
    parser.add_argument("--rounds", type=int, default=1, help="samples per (selector, N)")
    parser.add_argument("--kinds", default="epoll,poll,select", help="which selectors (epoll, poll, select)")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    kinds = [k for k in args.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            parser.error(f"unknown selector {k!r}: use epoll, poll or select")

    max_n = max(sizes)
    rlimit = raise_nofile(max_n + 64)
    ready_reader, ready_writer, idle = open_fds(max_n)
    out = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "rlimit": rlimit,
        "fds": {"ready": ready_reader.fileno(), "idleLow": idle[0].fileno(), "idleHigh": idle[-1].fileno()},
        "results": {k: {} for k in kinds},
        "calls": {k: {} for k in kinds},
        "stopped": {},
    }
    try:
        for _ in range(args.rounds):
            for n in sizes:
                for kind in kinds:
                    if kind in out["stopped"] and n >= out["stopped"][kind]["n"]:
                        continue  # refused at a smaller N already
                    sel = getattr(selectors, KINDS[kind])()
                    try:
                        for s in idle[:n]:
                            sel.register(s, selectors.EVENT_READ)
                        sel.register(ready_reader, selectors.EVENT_READ)
                        ns, calls = sample(sel, args.sample_ms, args.warmup_ms)
                    except ValueError as err:
                        out["stopped"][kind] = {"n": n, "error": f"{type(err).__name__}: {err}"}
                        continue
                    finally:
                        sel.close()
                    out["results"][kind].setdefault(str(n), []).append(ns)
                    out["calls"][kind].setdefault(str(n), []).append(calls)
    finally:
        for s in idle:
            s.close()
        ready_reader.close()
        ready_writer.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

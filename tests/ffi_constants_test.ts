/**
 * Checks every constant of `ffi/constants.ts`, every `Errno` entry and every
 * struct size of `ffi/structs.ts` against the system's C headers: a C program
 * generated from the TS export names is compiled with `cc` and prints the
 * values. A constant added to `constants.ts` is checked without touching this
 * file; a new numeric export of `structs.ts` fails until it gets a C
 * expression below.
 *
 * Run with `--allow-read --allow-write --allow-run --allow-env --allow-ffi`.
 */

import assert from "node:assert/strict";
import * as constants from "../ffi/constants.ts";
import * as structs from "../ffi/structs.ts";
import * as resolve from "../ffi/resolve.ts";
import { Errno } from "../ffi/errno.ts";

const HEADERS = [
  "sys/epoll.h",
  "poll.h",
  "sys/select.h",
  "sys/socket.h",
  "sys/uio.h",
  "netinet/in.h",
  "netinet/tcp.h",
  "fcntl.h",
  "sys/eventfd.h",
  "errno.h",
  "sys/un.h",
  "sys/resource.h",
  "time.h",
  "netdb.h",
  "stddef.h",
  "stdio.h",
];

/**
 * Exports of `constants.ts` that are not a C macro of the same name, with the C
 * expression to compare against. Empty today: every name there is a glibc macro
 * (`SOMAXCONN` included: glibc 2.36 here says 4096, older releases say 128, which
 * this test would flag). Add an entry here rather than skipping a name.
 */
const CONSTANT_EXPRS: Record<string, string> = {};

/** Every numeric export of `structs.ts` and the C expression it must equal. */
const STRUCT_EXPRS: Record<string, string> = {
  EPOLL_EVENT_SIZE: "sizeof(struct epoll_event)",
  EPOLL_EVENT_STRIDE: "sizeof(struct epoll_event) / 4",
  POLLFD_SIZE: "sizeof(struct pollfd)",
  FD_SET_SIZE: "sizeof(fd_set)",
  TIMEVAL_SIZE: "sizeof(struct timeval)",
  IOVEC_SIZE: "sizeof(struct iovec)",
  MSGHDR_SIZE: "sizeof(struct msghdr)",
  SOCKADDR_IN_SIZE: "sizeof(struct sockaddr_in)",
  SOCKADDR_IN6_SIZE: "sizeof(struct sockaddr_in6)",
  SOCKADDR_UN_SIZE: "sizeof(struct sockaddr_un)",
  UNIX_PATH_MAX: "sizeof(((struct sockaddr_un *)0)->sun_path) - 1",
  SOCKADDR_STORAGE_SIZE: "sizeof(struct sockaddr_storage)",
  RLIMIT_SIZE: "sizeof(struct rlimit)",
  TIMESPEC_SIZE: "sizeof(struct timespec)",
};

/** Layout facts the code relies on without exporting a constant for them. */
const LAYOUT: { name: string; expr: string; expected: number }[] = [
  {
    // reactor/epoll.ts reads `data` at word 1 when the stride is 3, else word 2.
    name: "offsetof(struct epoll_event, data)",
    expr: "offsetof(struct epoll_event, data)",
    expected: structs.EPOLL_EVENT_STRIDE === 3 ? 4 : 8,
  },
  { name: "offsetof(struct epoll_event, events)", expr: "offsetof(struct epoll_event, events)", expected: 0 },
  { name: "offsetof(struct pollfd, revents)", expr: "offsetof(struct pollfd, revents)", expected: 6 },
  { name: "offsetof(struct timeval, tv_usec)", expr: "offsetof(struct timeval, tv_usec)", expected: 8 },
  { name: "offsetof(struct iovec, iov_len)", expr: "offsetof(struct iovec, iov_len)", expected: 8 },
  // ffi/syscalls.ts getRlimit()/setRlimit() read rlim_cur as 64-bit word 0 and rlim_max as word 1.
  { name: "offsetof(struct rlimit, rlim_max)", expr: "offsetof(struct rlimit, rlim_max)", expected: 8 },
  { name: "sizeof(rlim_t)", expr: "sizeof(rlim_t)", expected: 8 },
  // ffi/syscalls.ts sendChunks() writes msg_iov as 64-bit word 2 and msg_iovlen as word 3.
  { name: "offsetof(struct msghdr, msg_iov)", expr: "offsetof(struct msghdr, msg_iov)", expected: 16 },
  { name: "offsetof(struct msghdr, msg_iovlen)", expr: "offsetof(struct msghdr, msg_iovlen)", expected: 24 },
  { name: "offsetof(struct sockaddr_in, sin_addr)", expr: "offsetof(struct sockaddr_in, sin_addr)", expected: 4 },
  { name: "offsetof(struct sockaddr_in6, sin6_addr)", expr: "offsetof(struct sockaddr_in6, sin6_addr)", expected: 8 },
  { name: "offsetof(struct sockaddr_un, sun_path)", expr: "offsetof(struct sockaddr_un, sun_path)", expected: 2 },
  // ffi/resolve.ts reads struct addrinfo at these offsets.
  { name: "offsetof(struct addrinfo, ai_family)", expr: "offsetof(struct addrinfo, ai_family)", expected: 4 },
  { name: "offsetof(struct addrinfo, ai_socktype)", expr: "offsetof(struct addrinfo, ai_socktype)", expected: 8 },
  { name: "offsetof(struct addrinfo, ai_addrlen)", expr: "offsetof(struct addrinfo, ai_addrlen)", expected: 16 },
  { name: "offsetof(struct addrinfo, ai_addr)", expr: "offsetof(struct addrinfo, ai_addr)", expected: 24 },
  { name: "offsetof(struct addrinfo, ai_next)", expr: "offsetof(struct addrinfo, ai_next)", expected: 40 },
];

/** Numeric exports of `resolve.ts` that are not a C macro of the same name (the EAI_* codes are). */
const RESOLVE_EXPRS: Record<string, string> = { ADDRINFO_SIZE: "sizeof(struct addrinfo)" };

function numericEntries(mod: Record<string, unknown>): [string, number][] {
  return Object.entries(mod).filter((e): e is [string, number] => typeof e[1] === "number");
}

/** One line per value: `KEY<TAB>value`, or `KEY<TAB>MISSING` when the macro is not defined. */
function cSource(): { source: string; expected: Map<string, number> } {
  const expected = new Map<string, number>();
  const lines = [
    "#define _GNU_SOURCE",
    ...HEADERS.map((h) => `#include <${h}>`),
    '#define P(key, expr) printf("%s\\t%lld\\n", key, (long long)(expr))',
    '#define MISSING(key) printf("%s\\tMISSING\\n", key)',
    "int main(void) {",
  ];
  const macro = (key: string, name: string, value: number) => {
    expected.set(key, value);
    if (!/^[A-Z_][A-Z0-9_]*$/.test(name)) throw new Error(`Not a C identifier: ${name}`);
    lines.push(`#ifdef ${name}`, `  P("${key}", ${name});`, "#else", `  MISSING("${key}");`, "#endif");
  };
  for (const [name, value] of numericEntries(constants)) {
    if (name in CONSTANT_EXPRS) {
      expected.set(`constants.${name}`, value);
      lines.push(`  P("constants.${name}", ${CONSTANT_EXPRS[name]});`);
    } else {
      macro(`constants.${name}`, name, value);
    }
  }
  for (const [name, value] of Object.entries(Errno)) macro(`Errno.${name}`, name, value);
  for (const [name, value] of numericEntries(structs)) {
    const expr = STRUCT_EXPRS[name];
    // An export with no C expression is reported by the test, not silently skipped.
    if (expr === undefined) continue;
    expected.set(`structs.${name}`, value);
    lines.push(`  P("structs.${name}", ${expr});`);
  }
  for (const [name, value] of numericEntries(resolve)) {
    if (name in RESOLVE_EXPRS) {
      expected.set(`resolve.${name}`, value);
      lines.push(`  P("resolve.${name}", ${RESOLVE_EXPRS[name]});`);
    } else {
      macro(`resolve.${name}`, name, value);
    }
  }
  for (const { name, expr, expected: value } of LAYOUT) {
    expected.set(name, value);
    lines.push(`  P("${name}", ${expr});`);
  }
  lines.push("  return 0;", "}", "");
  return { source: lines.join("\n"), expected };
}

function onPath(cmd: string): boolean {
  try {
    for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
      if (!dir) continue;
      try {
        if (Deno.statSync(`${dir}/${cmd}`).isFile) return true;
      } catch {
        // not in this directory
      }
    }
  } catch {
    // no --allow-env or --allow-read: treat as absent, the skip says so
  }
  return false;
}

const HAVE_CC = onPath("cc");

if (!HAVE_CC) {
  Deno.test({
    name: "ffi constants, errno values and struct sizes match the C headers (skipped: no cc on PATH)",
    ignore: true,
    fn() {},
  });
} else {
  Deno.test("ffi constants, errno values and struct sizes match the C headers", async (t) => {
    const { source, expected } = cSource();
    const dir = await Deno.makeTempDir({ prefix: "fdloop_constants_" });
    let printed: Map<string, string>;
    try {
      await Deno.writeTextFile(`${dir}/constants.c`, source);
      const cc = await new Deno.Command("cc", {
        args: ["-std=c11", "-Wall", "-o", `${dir}/constants`, `${dir}/constants.c`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(cc.code, 0, `cc failed:\n${new TextDecoder().decode(cc.stderr)}\n--- source ---\n${source}`);
      const run = await new Deno.Command(`${dir}/constants`, { stdout: "piped", stderr: "piped" }).output();
      assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
      printed = new Map(
        new TextDecoder().decode(run.stdout).trim().split("\n").map((l) => l.split("\t") as [string, string]),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }

    await t.step("the C program printed one line per value", () => {
      assert.deepEqual([...printed.keys()].sort(), [...expected.keys()].sort());
    });

    await t.step("every numeric export of structs.ts has a C expression", () => {
      const unchecked = numericEntries(structs).map(([n]) => n).filter((n) => !(n in STRUCT_EXPRS));
      assert.deepEqual(unchecked, [], `add these to STRUCT_EXPRS in ${import.meta.url}`);
    });

    await t.step("the generated program covers constants.ts and Errno", () => {
      // Guards the generator itself: a filter bug must not make the comparison vacuous.
      assert.ok(numericEntries(constants).length >= 60, "constants.ts exports fewer numbers than expected");
      for (const name of ["EPOLL_CTL_ADD", "EPOLL_CTL_DEL", "EPOLL_CTL_MOD", "EPOLLET", "FD_SETSIZE"]) {
        assert.ok(expected.has(`constants.${name}`), name);
      }
      assert.equal([...expected.keys()].filter((k) => k.startsWith("Errno.")).length, Object.keys(Errno).length);
    });

    await t.step("every value equals the C value", () => {
      const wrong: string[] = [];
      for (const [key, value] of expected) {
        const c = printed.get(key);
        if (c === "MISSING") wrong.push(`${key}: not defined by the C headers (add it to CONSTANT_EXPRS?)`);
        else if (c === undefined) wrong.push(`${key}: not printed`);
        else if (Number(c) !== value) wrong.push(`${key}: TS ${value}, C ${c}`);
      }
      assert.deepEqual(wrong, []);
    });
  });
}

/**
 * Host-name resolution with `getaddrinfo(3)`, called through a
 * `nonblocking: true` symbol so the lookup (files, DNS, whatever
 * `/etc/nsswitch.conf` says) runs on Deno's blocking thread pool and never
 * stalls the JS thread.
 *
 * The layout of `struct addrinfo` and the `EAI_*` codes live here, not in
 * `structs.ts`/`constants.ts`: nothing else needs them.
 * `tests/ffi_constants_test.ts` checks both against `<netdb.h>`.
 *
 * @module
 */

import { sym } from "./libc.ts";
import { AF_INET, AF_INET6, AF_UNSPEC, SOCK_STREAM } from "./constants.ts";
import { errnoName } from "./errno.ts";
import { decodeSockaddr, type SocketAddress } from "./structs.ts";

// getaddrinfo(3) error codes, glibc's values (<netdb.h>; the ones marked GNU need _GNU_SOURCE in C).
/** Invalid `ai_flags` in the hints. */
export const EAI_BADFLAGS = -1;
/** The name does not resolve (or neither node nor service was given). */
export const EAI_NONAME = -2;
/** A temporary failure: the name server did not answer in time, try again later. */
export const EAI_AGAIN = -3;
/** A permanent failure of the name server. */
export const EAI_FAIL = -4;
/** The name exists but has no address (GNU). */
export const EAI_NODATA = -5;
/** The requested address family is not supported. */
export const EAI_FAMILY = -6;
/** The requested socket type is not supported. */
export const EAI_SOCKTYPE = -7;
/** The service is not available for the socket type. */
export const EAI_SERVICE = -8;
/** The host has no address of the requested family (GNU). */
export const EAI_ADDRFAMILY = -9;
/** Out of memory. */
export const EAI_MEMORY = -10;
/** A system error: the cause is in `errno`. */
export const EAI_SYSTEM = -11;
/** An argument buffer was too small. */
export const EAI_OVERFLOW = -12;

const EAI_NAMES: Record<number, string> = {
  [EAI_BADFLAGS]: "EAI_BADFLAGS",
  [EAI_NONAME]: "EAI_NONAME",
  [EAI_AGAIN]: "EAI_AGAIN",
  [EAI_FAIL]: "EAI_FAIL",
  [EAI_NODATA]: "EAI_NODATA",
  [EAI_FAMILY]: "EAI_FAMILY",
  [EAI_SOCKTYPE]: "EAI_SOCKTYPE",
  [EAI_SERVICE]: "EAI_SERVICE",
  [EAI_ADDRFAMILY]: "EAI_ADDRFAMILY",
  [EAI_MEMORY]: "EAI_MEMORY",
  [EAI_SYSTEM]: "EAI_SYSTEM",
  [EAI_OVERFLOW]: "EAI_OVERFLOW",
};

/**
 * Size of `struct addrinfo` (LP64, the same on x86_64 and aarch64):
 * `ai_flags` i32 @0, `ai_family` i32 @4, `ai_socktype` i32 @8,
 * `ai_protocol` i32 @12, `ai_addrlen` u32 @16, 4 bytes of padding,
 * `ai_addr` pointer @24, `ai_canonname` pointer @32, `ai_next` pointer @40.
 */
export const ADDRINFO_SIZE = 48;
// Field offsets; tests/ffi_constants_test.ts checks each with offsetof().
const AI_FAMILY = 4;
const AI_SOCKTYPE = 8;
const AI_ADDRLEN = 16;
const AI_ADDR = 24;
const AI_NEXT = 40;

/**
 * A failed `getaddrinfo` lookup: carries the `EAI_*` code, its name and the
 * host.
 *
 * The message reads like
 * `Cannot resolve "nope.invalid": EAI_NONAME (getaddrinfo): Name or service not known`.
 *
 * For `EAI_SYSTEM` the cause is in `errno`, but {@linkcode getaddrinfo} cannot
 * know it: the call ran on another thread, whose `errno` is gone by the time
 * the promise settles. `errno` is then `undefined` and the message says so.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EAI_NONAME, GaiError } from "@fdloop/fdloop/ffi";
 * const err = new GaiError(EAI_NONAME, "nope.invalid", "Name or service not known");
 * assert.equal(err.code, "EAI_NONAME");
 * assert.equal(err.message, 'Cannot resolve "nope.invalid": EAI_NONAME (getaddrinfo): Name or service not known');
 * ```
 */
export class GaiError extends Error {
  /** The name of the code, such as `"EAI_NONAME"` (`"EAI-100"` for a code glibc does not define). */
  readonly code: string;
  /** The negative `EAI_*` value getaddrinfo returned, such as -2. */
  readonly gaiCode: number;
  /** The host that was looked up. */
  readonly host: string;
  /** Always `"getaddrinfo"`. */
  readonly syscall: string = "getaddrinfo";
  /** For `EAI_SYSTEM`, the `errno` value when it is known; `undefined` otherwise (always, from {@linkcode getaddrinfo}). */
  readonly errno: number | undefined;

  /**
   * Makes the error for a failed lookup of `host`.
   *
   * @param gaiCode The `EAI_*` value getaddrinfo returned.
   * @param host The host that was looked up.
   * @param description The `gai_strerror` text for the code.
   * @param errno For `EAI_SYSTEM`, the `errno` value if it is known.
   */
  constructor(gaiCode: number, host: string, description?: string, errno?: number) {
    const code = EAI_NAMES[gaiCode] ?? `EAI${gaiCode}`;
    let what = `${code} (getaddrinfo)${description ? `: ${description}` : ""}`;
    if (gaiCode === EAI_SYSTEM) {
      what += errno === undefined ? " (errno unknown: the lookup ran on another thread)" : ` (${errnoName(errno)})`;
    }
    super(`Cannot resolve ${JSON.stringify(host)}: ${what}`);
    this.name = "GaiError";
    this.code = code;
    this.gaiCode = gaiCode;
    this.host = host;
    this.errno = gaiCode === EAI_SYSTEM ? errno : undefined;
  }
}

/** Options of {@linkcode getaddrinfo}. */
export interface GetAddrInfoOptions {
  /** 4 for IPv4 addresses only, 6 for IPv6 only, 0 (default) for both. */
  family?: 0 | 4 | 6;
}

const FAMILIES: Record<number, number> = { 0: AF_UNSPEC, 4: AF_INET, 6: AF_INET6 };

/**
 * Buffers handed to a pending nonblocking call. V8 keeps only live values
 * across an `await`, and the native call holds nothing but raw pointers
 * (newer Deno releases retain the backing stores themselves; this does not
 * rely on it), so each call's buffers stay here until its promise settles.
 */
const inFlight = new Set<readonly ArrayBufferView[]>();

function gaiStrerror(code: number): string {
  const p = sym.gai_strerror(code);
  return p ? Deno.UnsafePointerView.getCString(p) : "";
}

/**
 * Resolves a host name to its IP addresses with `getaddrinfo(3)`, off the JS
 * thread.
 *
 * The lookup follows `/etc/nsswitch.conf`, `/etc/hosts` and
 * `/etc/resolv.conf` like any C program's. Addresses come back in
 * getaddrinfo's order (RFC 6724 destination address selection, tuned by
 * `/etc/gai.conf`), each once, with port 0. `AI_ADDRCONFIG` is not set, so a
 * machine with only loopback still gets the addresses its name resolves to.
 * A numeric address (`"127.0.0.1"`, `"::1"`, without brackets) resolves to
 * itself without a lookup. An IPv6 zone (`fe80::1%eth0`) is kept as the interface
 * index (`fe80::1%2`), which `encodeSockaddr()` turns back into `sin6_scope_id`.
 *
 * A pending lookup cannot be cancelled; a name server that does not answer
 * delays it by the resolver's timeout (5 s per try by default).
 *
 * @param host The host name or numeric address.
 * @param options `family`: 4 or 6 to ask for one address family only.
 * @returns The addresses, at least one.
 * @throws {GaiError} when the lookup fails, e.g. `EAI_NONAME` for a name that does not exist, `EAI_AGAIN` when the
 * name server did not answer, `EAI_ADDRFAMILY`/`EAI_NONAME` when the name has no address of the requested family.
 * @throws {TypeError} for an empty host, a host containing a NUL byte or an unknown family.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getaddrinfo } from "@fdloop/fdloop/ffi";
 * assert.deepEqual(await getaddrinfo("::1"), [{ family: "IPv6", address: "::1", port: 0 }]);
 * const local = await getaddrinfo("localhost", { family: 4 });
 * assert.ok(local.every((a) => a.family === "IPv4"));
 * ```
 */
export async function getaddrinfo(
  host: string,
  options: GetAddrInfoOptions = {},
): Promise<Extract<SocketAddress, { family: "IPv4" | "IPv6" }>[]> {
  if (typeof host !== "string") throw new TypeError(`Host must be a string, got ${typeof host}`);
  if (host.length === 0) throw new TypeError('Cannot resolve "": the host name is empty');
  if (host.includes("\0")) throw new TypeError(`Cannot resolve ${JSON.stringify(host)}: the host contains a NUL byte`);
  const family = FAMILIES[options.family ?? 0];
  if (family === undefined) {
    throw new TypeError(`Address family must be 0, 4 or 6, got ${options.family}`);
  }

  const node = new TextEncoder().encode(`${host}\0`);
  const hints = new Uint8Array(ADDRINFO_SIZE); // zeroed: no flags, null pointers
  const hintsView = new DataView(hints.buffer);
  hintsView.setInt32(AI_FAMILY, family, true);
  hintsView.setInt32(AI_SOCKTYPE, SOCK_STREAM, true); // one entry per address, not one per socket type
  const res = new BigUint64Array(1); // struct addrinfo **res: the list's head, written by the call

  const buffers = [node, hints, res] as const;
  inFlight.add(buffers);
  let rc: number;
  try {
    rc = await sym.getaddrinfo_nb(node, null, hints, res);
  } finally {
    inFlight.delete(buffers);
  }
  if (rc !== 0) throw new GaiError(rc, host, gaiStrerror(rc));

  const head = Deno.UnsafePointer.create(res[0]);
  const out: Extract<SocketAddress, { family: "IPv4" | "IPv6" }>[] = [];
  try {
    const seen = new Set<string>();
    for (let p = head; p !== null;) {
      const ai = new Deno.UnsafePointerView(p);
      const aiFamily = ai.getInt32(AI_FAMILY);
      const addrLen = ai.getUint32(AI_ADDRLEN);
      const addr = ai.getPointer(AI_ADDR);
      if ((aiFamily === AF_INET || aiFamily === AF_INET6) && addr !== null && addrLen > 0) {
        const sa = new Uint8Array(addrLen);
        new Deno.UnsafePointerView(addr).copyInto(sa);
        const decoded = decodeSockaddr(sa, addrLen);
        if (decoded.family !== "unix") {
          const key = `${decoded.family} ${decoded.address}`;
          if (!seen.has(key)) {
            seen.add(key);
            out.push({ family: decoded.family, address: decoded.address, port: 0 });
          }
        }
      }
      p = ai.getPointer(AI_NEXT);
    }
  } finally {
    if (head !== null) sym.freeaddrinfo(head);
  }
  return out;
}

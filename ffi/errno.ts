/**
 * errno names and the {@linkcode OSError} type.
 *
 * @module
 */

/** errno values of Linux (asm-generic numbering, shared by x86_64 and aarch64). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EPIPE: 32,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ELOOP: 40,
  ENONET: 64,
  EPROTO: 71,
  ENOTSOCK: 88,
  EDESTADDRREQ: 89,
  EMSGSIZE: 90,
  EPROTOTYPE: 91,
  ENOPROTOOPT: 92,
  EPROTONOSUPPORT: 93,
  EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ENETRESET: 102,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOBUFS: 105,
  EISCONN: 106,
  ENOTCONN: 107,
  ESHUTDOWN: 108,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTDOWN: 112,
  EHOSTUNREACH: 113,
  EALREADY: 114,
  EINPROGRESS: 115,
  ECANCELED: 125,
} as const;

/** The name of an errno value. */
export type ErrnoName = keyof typeof Errno;

const NAMES: string[] = [];
for (const [name, value] of Object.entries(Errno)) NAMES[value] = name;

/**
 * The symbolic name of an errno value, such as `"EADDRINUSE"` for 98.
 *
 * @param errno The errno value.
 * @returns The name, or `"E<number>"` for a value not in the table.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errnoName } from "@fdloop/fdloop/ffi";
 * assert.equal(errnoName(111), "ECONNREFUSED");
 * ```
 */
export function errnoName(errno: number): string {
  return NAMES[errno] ?? `E${errno}`;
}

/**
 * An error from a libc call: carries the errno value, its name and the call.
 *
 * The message reads like `"Cannot bind 127.0.0.1:8000: EADDRINUSE (bind): Address already in use"`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OSError } from "@fdloop/fdloop/ffi";
 * const err = new OSError(98, "bind", "Cannot bind 127.0.0.1:8000", "Address already in use");
 * assert.equal(err.code, "EADDRINUSE");
 * assert.equal(err.syscall, "bind");
 * assert.equal(err.message, "Cannot bind 127.0.0.1:8000: EADDRINUSE (bind): Address already in use");
 * ```
 */
export class OSError extends Error {
  /** The errno value, such as 98. */
  readonly errno: number;
  /** The errno name, such as `"EADDRINUSE"`. */
  readonly code: string;
  /** The libc call that failed, such as `"bind"`. */
  readonly syscall: string;

  /**
   * Makes an error for `errno` from `syscall`.
   *
   * @param errno The errno value.
   * @param syscall The libc call that failed.
   * @param context What was being done, for the start of the message.
   * @param description The `strerror` text for the errno value.
   */
  constructor(errno: number, syscall: string, context?: string, description?: string) {
    const code = errnoName(errno);
    const what = `${code} (${syscall})${description ? `: ${description}` : ""}`;
    super(context ? `${context}: ${what}` : what);
    this.name = "OSError";
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
  }
}

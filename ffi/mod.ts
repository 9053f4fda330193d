/**
 * The libc layer of fdloop: raw symbols, checked wrappers that turn `-1`
 * into an {@linkcode OSError}, struct layouts and constants.
 *
 * Nothing here knows about the reactor. Most programs never import this
 * module; it is public for people who want to see or drive the syscalls.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { close, eventfd, read, write, WOULD_BLOCK } from "@fdloop/fdloop/ffi";
 * const fd = eventfd();
 * assert.equal(read(fd, new Uint8Array(8)), WOULD_BLOCK); // nothing signalled yet
 * write(fd, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
 * assert.equal(read(fd, new Uint8Array(8)), 8);
 * close(fd);
 * ```
 *
 * @module
 */

export * from "./constants.ts";
export * from "./errno.ts";
export * from "./structs.ts";
export * from "./syscalls.ts";
export { errnoView, libc, type LibcSymbols, SUPPORTED_PLATFORMS, sym } from "./libc.ts";
export * from "./resolve.ts";

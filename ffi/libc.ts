/**
 * The raw libc symbols, opened once with `Deno.dlopen`.
 *
 * Signatures are chosen for V8's fast FFI path: every hot-path parameter and
 * result is a 32-bit number, a `pointer` or a `buffer`. `ssize_t` results are
 * declared `i32` and `size_t` lengths `u32` (64-bit types come back as BigInt
 * and leave the fast path); the checked wrappers in `syscalls.ts` guard every
 * length below 2 GiB so the truncation can never change a value.
 *
 * @module
 */

/** Platforms fdloop supports: Linux with glibc on x86_64 or aarch64. */
export const SUPPORTED_PLATFORMS = ["linux/x86_64", "linux/aarch64"] as const;

const symbols = {
  // int epoll_create1(int flags)
  epoll_create1: { parameters: ["i32"], result: "i32" },
  // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
  // The event array lives as long as its selector, so its address is taken once and passed
  // as a `pointer` (a few ns cheaper per call than a `buffer`).
  epoll_wait: { parameters: ["i32", "pointer", "i32", "i32"], result: "i32" },
  // the same call on Deno's blocking thread pool, for a wait that must not block JS
  epoll_wait_nb: {
    name: "epoll_wait",
    parameters: ["i32", "pointer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout); nfds_t as u32 (guarded)
  poll: { parameters: ["buffer", "u32", "i32"], result: "i32" },
  poll_nb: { name: "poll", parameters: ["buffer", "u32", "i32"], result: "i32", nonblocking: true },
  // int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *timeout)
  select: { parameters: ["i32", "buffer", "buffer", "buffer", "buffer"], result: "i32" },
  select_nb: {
    name: "select",
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  // int socket(int domain, int type, int protocol)
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int bind(int fd, const struct sockaddr *addr, socklen_t len)
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int listen(int fd, int backlog)
  listen: { parameters: ["i32", "i32"], result: "i32" },
  // int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  // int connect(int fd, const struct sockaddr *addr, socklen_t len)
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count)
  read: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // ssize_t write(int fd, const void *buf, size_t count)
  write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // ssize_t recv(int fd, void *buf, size_t len, int flags)
  recv: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  // ssize_t send(int fd, const void *buf, size_t len, int flags)
  send: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  // ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *srclen)
  recvfrom: { parameters: ["i32", "buffer", "u32", "i32", "buffer", "buffer"], result: "i32" },
  // ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dst, socklen_t dstlen)
  sendto: { parameters: ["i32", "buffer", "u32", "i32", "buffer", "u32"], result: "i32" },
  // ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
  readv: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
  writev: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // int close(int fd)
  close: { parameters: ["i32"], result: "i32" },
  // int shutdown(int fd, int how)
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  // int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  // int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int fcntl(int fd, int cmd, int arg)   (variadic in C; an int third argument)
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // int pipe2(int pipefd[2], int flags)
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  // int socketpair(int domain, int type, int protocol, int sv[2])
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // int unlink(const char *path)
  unlink: { parameters: ["buffer"], result: "i32" },
  // char *strerror(int errnum)
  strerror: { parameters: ["i32"], result: "pointer" },
  // int clock_gettime(clockid_t clockid, struct timespec *tp)
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  // int getrlimit(int resource, struct rlimit *rlim)
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  // int setrlimit(int resource, const struct rlimit *rlim)
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  // unsigned int if_nametoindex(const char *ifname); 0 when there is no such interface
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  // int *__errno_location(void)
  __errno_location: { parameters: [], result: "pointer" },
  // int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
  // On Deno's blocking thread pool: a lookup can take seconds. `service` may be null (a `buffer` accepts null).
  getaddrinfo_nb: {
    name: "getaddrinfo",
    parameters: ["buffer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  // void freeaddrinfo(struct addrinfo *res)
  freeaddrinfo: { parameters: ["pointer"], result: "void" },
  // const char *gai_strerror(int errcode)
  gai_strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The type of the opened libc symbols. */
export type LibcSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];

function open(): Deno.DynamicLibrary<typeof symbols> {
  const platform = `${Deno.build.os}/${Deno.build.arch}`;
  if (!(SUPPORTED_PLATFORMS as readonly string[]).includes(platform)) {
    throw new Error(
      `fdloop does not support ${platform}: it needs Linux with glibc on ${SUPPORTED_PLATFORMS.join(" or ")}`,
    );
  }
  try {
    // A bare soname: the dynamic linker searches its own paths. Note that
    // `--allow-ffi=libc.so.6` would resolve against the working directory;
    // grant plain `--allow-ffi` (or an absolute path to libc).
    return Deno.dlopen("libc.so.6", symbols);
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw new Error(
        "fdloop needs FFI permission to call libc: run deno with --allow-ffi",
        { cause: err },
      );
    }
    throw new Error(`Cannot open libc.so.6 (fdloop needs glibc): ${(err as Error).message}`, { cause: err });
  }
}

/** The libc library handle; opened on first import. */
export const libc: Deno.DynamicLibrary<typeof symbols> = open();

/** The libc symbols, for direct calls on hot paths. */
export const sym: LibcSymbols = libc.symbols;

/**
 * A live view of this thread's `errno`. Read it straight after a failing call,
 * before anything else allocates.
 */
export const errnoView: Int32Array = new Int32Array(
  Deno.UnsafePointerView.getArrayBuffer(sym.__errno_location()!, 4),
);

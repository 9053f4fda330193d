/*
 * The libc calls of bench/ffi_bench.ts, timed from C: the floor the Deno FFI
 * numbers are compared against (bench/ffi_vs_c.ts compiles and runs this).
 *
 *   cc -O2 -o /tmp/ffi_baseline bench/c/ffi_baseline.c && /tmp/ffi_baseline [iterations]
 *
 * Prints one line per call: "<name>\t<ns per op>\t<user ns per op>\t<system
 * ns per op>", the last two from getrusage(): how much of a call the kernel
 * charges to user time and how much to system time (on a VM, the cost of the
 * syscall instruction itself can land in user time). Each loop is warmed up
 * with 1/100 of its iterations first. Exits non-zero if a call misbehaves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* This process's user and system CPU time so far, in ns. */
static void cpu_ns(double *user, double *sys) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *user = (double)ru.ru_utime.tv_sec * 1e9 + (double)ru.ru_utime.tv_usec * 1e3;
  *sys = (double)ru.ru_stime.tv_sec * 1e9 + (double)ru.ru_stime.tv_usec * 1e3;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static int ep, sv[2];
static struct epoll_event events[64];
static char wbuf[64], rbuf[64];

static void op_epoll_wait(void) {
  if (epoll_wait(ep, events, 64, 0) != 0) die("epoll_wait");
}

static void op_write_read(void) {
  if (write(sv[0], wbuf, 64) != 64) die("write");
  if (read(sv[1], rbuf, 64) != 64) die("read");
}

static void op_read_eagain(void) {
  if (read(sv[1], rbuf, 64) != -1 || errno != EAGAIN) die("read (EAGAIN)");
}

static void op_fcntl(void) {
  if (fcntl(sv[0], F_GETFD, 0) < 0) die("fcntl");
}

/* Called through a pointer so the compiler cannot hoist or merge the calls. */
static void run(const char *name, void (*volatile op)(void), long iterations) {
  for (long i = 0; i < iterations / 100; i++) op();
  double u0, s0, u1, s1;
  cpu_ns(&u0, &s0);
  double t0 = now_ns();
  for (long i = 0; i < iterations; i++) op();
  double t1 = now_ns();
  cpu_ns(&u1, &s1);
  double n = (double)iterations;
  printf("%s\t%.1f\t%.1f\t%.1f\n", name, (t1 - t0) / n, (u1 - u0) / n, (s1 - s0) / n);
}

int main(int argc, char **argv) {
  long iterations = argc > 1 ? atol(argv[1]) : 1000000;
  if (iterations <= 0) iterations = 1000000;
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
  run("epoll_wait(ep, buf, 64, 0)", op_epoll_wait, iterations);
  run("write 64 B + read 64 B (socketpair)", op_write_read, iterations);
  run("read 64 B, empty socket (EAGAIN)", op_read_eagain, iterations);
  run("fcntl(fd, F_GETFD, 0)", op_fcntl, iterations);
  close(sv[0]);
  close(sv[1]);
  close(ep);
  return 0;
}

/*
 * The ceiling of the echo load benchmark: a TCP echo server in C on
 * level-triggered epoll, non-blocking accept4, one recv and one send per
 * readable event into a shared 64 KiB buffer, as fdloop's engine does, with
 * TCP_NODELAY like the other servers. bench/load/run.ts compiles it with
 * `cc -O2` and runs it as the "c" server, so the CPU per round trip that
 * every server pays in the kernel, and the least user-space CPU one
 * epoll_wait + recv + send can cost, are measured beside the others.
 *
 *   cc -O2 -o /tmp/echo_baseline bench/c/echo_baseline.c && /tmp/echo_baseline [port]
 *
 * Prints "listening on 127.0.0.1:PORT"; on SIGINT/SIGTERM prints a summary
 * line and exits 0. A short send (a peer not reading its echo) drops the
 * rest: the benchmark's clients keep one message in flight, so it never
 * happens there.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "_server.h"

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8000;
  catch_stop_signals();
  int ep;
  int lfd = listen_loopback(port, &ep);

  static struct epoll_event events[64];
  static char buf[64 * 1024];
  unsigned long connections = 0;
  unsigned long long bytes = 0;
  while (!stop) {
    int n = wait_events(ep, events, 64);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        while (accept_next(lfd, ep) >= 0) connections++;
        continue;
      }
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        close(fd); /* also leaves the epoll set */
        continue;
      }
      bytes += (unsigned long long)r;
      if (send(fd, buf, (size_t)r, MSG_NOSIGNAL) < 0 && errno != EAGAIN) close(fd);
    }
  }
  printf("echo_baseline: served %lu connections, echoed %llu bytes\n", connections, bytes);
  return 0;
}

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

static volatile sig_atomic_t stop = 0;
static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8000;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait returns EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(lfd, 511) < 0) die("listen");
  socklen_t alen = sizeof addr;
  getsockname(lfd, (struct sockaddr *)&addr, &alen);
  printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  fflush(stdout);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl");

  static struct epoll_event events[64];
  static char buf[64 * 1024];
  unsigned long connections = 0;
  unsigned long long bytes = 0;
  while (!stop) {
    int n = epoll_wait(ep, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          connections++;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
          if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0) close(c);
        }
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

/*
 * What the C servers of the load benchmarks share (bench/c/echo_baseline.c,
 * bench/c/http_baseline.c): a stop flag set by SIGINT/SIGTERM (without
 * SA_RESTART, so epoll_wait returns EINTR), a non-blocking listening
 * socket on 127.0.0.1 watched by a new level-triggered epoll set, the wait
 * and the accepting.
 */
#ifndef FDLOOP_BENCH_SERVER_H
#define FDLOOP_BENCH_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <errno.h>
#include <netinet/tcp.h>
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

/* SIGINT and SIGTERM set `stop`; SIGPIPE is ignored. */
static void catch_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait returns EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/*
 * Listens on 127.0.0.1:port (0: any free port), prints "listening on
 * 127.0.0.1:PORT", and returns the listening fd; *ep is a new epoll set
 * with that fd in it (EPOLLIN, data.fd).
 */
static int listen_loopback(int port, int *ep) {
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

  *ep = epoll_create1(EPOLL_CLOEXEC);
  if (*ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  if (epoll_ctl(*ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl");
  return lfd;
}

/* epoll_wait for up to `max` events, blocking; 0 when a signal interrupted it. */
static int wait_events(int ep, struct epoll_event *events, int max) {
  int n = epoll_wait(ep, events, max, -1);
  if (n < 0) {
    if (errno == EINTR) return 0;
    die("epoll_wait");
  }
  return n;
}

/*
 * Accepts the next pending connection of `lfd` (non-blocking, TCP_NODELAY)
 * and adds it to `ep` (EPOLLIN, data.fd); -1 when none is pending.
 */
static int accept_next(int lfd, int ep) {
  for (;;) {
    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return -1;
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) == 0) return c;
    close(c);
  }
}

#endif

/*
 * The floor of the HTTP load benchmark: a hello-world HTTP/1.1 server in C on
 * level-triggered epoll, one recv and one send per read, as fdloop's engine
 * does, with none of HTTP's rules (it answers every "\r\n\r\n" it sees with
 * the same canned response). bench/load/http_run.ts compiles and runs it as
 * the "c" server, so the CPU per request that every server pays in the
 * kernel, and the least user-space CPU one read + one send can cost, are
 * measured beside the others on the same machine.
 *
 *   cc -O2 -o /tmp/http_baseline bench/c/http_baseline.c && /tmp/http_baseline [port]
 *
 * Prints "listening on 127.0.0.1:PORT"; exits 0 on SIGINT/SIGTERM.
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
#include <time.h>
#include <unistd.h>

#include "_server.h"

#define MAX_FDS 65536

/* Per connection: how much of "\r\n\r\n" the last read ended with. */
static unsigned char matched[MAX_FDS];

static char response[256];
static size_t response_len;
static time_t date_second = -1;

/* The canned response with a Date header, rebuilt once per second (as the other servers do). */
static void build_response(void) {
  time_t now = time(NULL);
  if (now == date_second) return;
  date_second = now;
  char date[64];
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  response_len = (size_t)snprintf(response, sizeof response,
                                  "HTTP/1.1 200 OK\r\nDate: %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                  "Content-Length: 13\r\n\r\nHello, World!",
                                  date);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8000;
  catch_stop_signals();
  int ep;
  int lfd = listen_loopback(port, &ep);

  static struct epoll_event events[64];
  static char buf[64 * 1024];
  static char out[64 * 1024];
  unsigned long requests = 0;
  while (!stop) {
    int n = wait_events(ep, events, 64);
    build_response();
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        int c;
        while ((c = accept_next(lfd, ep)) >= 0) {
          if (c >= MAX_FDS) close(c); /* also leaves the epoll set */
          else matched[c] = 0;
        }
        continue;
      }
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        close(fd); /* also leaves the epoll set */
        continue;
      }
      /* Count the ends of request heads in this read, carrying a partial match over. */
      int m = matched[fd];
      size_t count = 0;
      for (ssize_t k = 0; k < r; k++) {
        char ch = buf[k];
        if (ch == (m & 1 ? '\n' : '\r')) {
          if (++m == 4) {
            count++;
            m = 0;
          }
        } else {
          m = ch == '\r' ? 1 : 0;
        }
      }
      matched[fd] = (unsigned char)m;
      /* All the responses of one read in one send (a blocking peer is not handled: wrk always reads). */
      size_t len = 0;
      for (size_t k = 0; k < count && len + response_len <= sizeof out; k++) {
        memcpy(out + len, response, response_len);
        len += response_len;
      }
      requests += count;
      if (len > 0 && send(fd, out, len, MSG_NOSIGNAL) < 0 && errno != EAGAIN) close(fd);
    }
  }
  printf("http_baseline: served %lu requests\n", requests);
  return 0;
}

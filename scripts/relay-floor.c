// relay-floor: the least a two-relay proxy chain can do per connection,
// for the connection-rate floor of that shape in scripts/bench.
//
//   app --SOCKS5/TCP--> front --MPTCP (or TCP)--> back --TCP--> target
//
//   relay-floor front PORT BACK_PORT [mptcp|tcp]
//   relay-floor back PORT [mptcp|tcp]
//
// Each relay is one thread, one epoll set, level-triggered, blocking
// sockets (on loopback a connect completes within the call). The front
// answers a SOCKS5 greeting (no authentication) and an IPv4 CONNECT at
// once, without waiting for the target, connects to the back relay and
// sends it the target's 6 bytes (address, port); the back relay connects
// to the target. Then both copy through a 16 KiB buffer and pass each FIN
// on (shutdown(2)); a connection is closed when both directions ended.
// No authentication, no policy, no logs, no limits, no timeouts: not a
// proxy, a measuring stick. Listens on 127.0.0.1 only.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

enum stage { RELAY, GREETING, REQUEST, HEADER };

// One side of a relayed connection; `other` is the opposite side.
struct side {
  int fd;
  enum stage stage;
  int eof;
  struct side *other;
};

static int ep;

static void fail(const char *what) {
  perror(what);
  exit(1);
}

static void watch(struct side *s) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev)) fail("epoll_ctl");
}

static void write_all(int fd, const char *b, size_t n) {
  while (n) {
    ssize_t k = write(fd, b, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;  // the peer is gone; its read side reports it
    b += k;
    n -= (size_t)k;
  }
}

static int dial(const struct sockaddr_in *to, int proto) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, proto);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (const struct sockaddr *)to, sizeof *to)) {
    close(fd);
    return -1;
  }
  return fd;
}

// Pairs `s` with a new side on `fd` and relays from now on.
static void pair(struct side *s, int fd) {
  struct side *o = calloc(1, sizeof *o);
  if (!o) fail("calloc");
  o->fd = fd;
  o->other = s;
  s->other = o;
  s->stage = RELAY;
  watch(o);
}

static void drop(struct side *s) {
  close(s->fd);
  free(s);
}

int main(int argc, char **argv) {
  int front = argc >= 4 && !strcmp(argv[1], "front");
  int back = argc >= 3 && !strcmp(argv[1], "back");
  if (!front && !back) {
    fprintf(stderr, "usage: relay-floor front PORT BACK_PORT [mptcp|tcp]\n"
                    "       relay-floor back PORT [mptcp|tcp]\n");
    return 2;
  }
  const char *mode = argc > (front ? 4 : 3) ? argv[front ? 4 : 3] : "mptcp";
  int middle = strcmp(mode, "tcp") ? IPPROTO_MPTCP : IPPROTO_TCP;
  struct sockaddr_in next = {.sin_family = AF_INET};
  if (front) {
    next.sin_port = htons((unsigned short)atoi(argv[3]));
    next.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }

  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, front ? IPPROTO_TCP : middle);
  if (l < 0) fail("socket");
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in at = {.sin_family = AF_INET,
                           .sin_port = htons((unsigned short)atoi(argv[2])),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(l, (struct sockaddr *)&at, sizeof at) || listen(l, 4096)) fail("listen");
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) fail("epoll_create1");
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, l, &lev)) fail("epoll_ctl");

  struct epoll_event evs[64];
  static char buf[16384];
  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    if (n < 0 && errno != EINTR) fail("epoll_wait");
    for (int i = 0; i < n; i++) {
      struct side *s = evs[i].data.ptr;
      if (!s) {
        int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s = calloc(1, sizeof *s);
        if (!s) fail("calloc");
        s->fd = fd;
        s->stage = front ? GREETING : HEADER;
        watch(s);
        continue;
      }
      ssize_t k = read(s->fd, buf, sizeof buf);
      if (s->stage != RELAY) {
        int fd = -1;
        if (s->stage == GREETING && k >= 3 && buf[0] == 5) {
          write_all(s->fd, "\x05\x00", 2);
          s->stage = REQUEST;
          continue;
        }
        if (s->stage == REQUEST && k >= 10 && buf[0] == 5 && buf[1] == 1 && buf[3] == 1) {
          write_all(s->fd, "\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00", 10);
          fd = dial(&next, middle);
          if (fd >= 0) write_all(fd, buf + 4, (size_t)k - 4);  // target, then any data
        } else if (s->stage == HEADER && k >= 6) {
          struct sockaddr_in target = {.sin_family = AF_INET};
          memcpy(&target.sin_addr, buf, 4);
          memcpy(&target.sin_port, buf + 4, 2);
          fd = dial(&target, IPPROTO_TCP);
          if (fd >= 0 && k > 6) write_all(fd, buf + 6, (size_t)k - 6);
        }
        if (fd < 0) {
          drop(s);  // a short or foreign handshake, or no next hop
          continue;
        }
        pair(s, fd);
        continue;
      }
      if (k > 0) {
        write_all(s->other->fd, buf, (size_t)k);
        continue;
      }
      if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      // EOF (or an error): pass the FIN on; close when both ended.
      s->eof = 1;
      epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
      shutdown(s->other->fd, SHUT_WR);
      if (s->other->eof) {
        drop(s->other);
        drop(s);
      }
    }
  }
}

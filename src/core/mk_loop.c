/* mk_loop: libuv handles for the core (see mk_loop.h). Each handle is one allocation
 * whose first member is the libuv handle; uv_close's callback frees it. */
#include "mk_loop.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct mk_io {
  uv_poll_t poll;
  mk_io_fn cb;
  void *ud;
  int armed; /* the libuv events uv_poll_start was last given; 0 while stopped */
};

struct mk_timer {
  uv_timer_t timer;
  mk_timer_fn cb;
  void *ud;
};


static void free_handle(uv_handle_t *h) { free(h); }

static void io_cb(uv_poll_t *p, int status, int events) {
  mk_io *io = (mk_io *)p;
  int ev = 0;
  /* on an error libuv has stopped the watcher itself: the next watch must start it */
  if (status < 0) io->armed = 0;
  if (events & UV_READABLE) ev |= MK_READ;
  if (events & UV_WRITABLE) ev |= MK_WRITE;
  io->cb(io->ud, ev, status);
}

mk_io *mk_io_new(mk_loop *loop, int fd, mk_io_fn cb, void *ud, int *err) {
  mk_io *io = malloc(sizeof *io);
  int rc;
  if (!io) {
    if (err) *err = UV_ENOMEM;
    return NULL;
  }
  rc = uv_poll_init(loop, &io->poll, fd);
  if (rc < 0) {
    /* uv_poll_init does not register a failed handle with the loop */
    free(io);
    if (err) *err = rc;
    return NULL;
  }
  io->poll.data = NULL; /* nothing of ours for other walkers of the loop (luv) */
  io->cb = cb;
  io->ud = ud;
  io->armed = 0;
  return io;
}

int mk_io_watch(mk_io *io, int events) {
  int uev = 0, rc;
  if (events & MK_READ) uev |= UV_READABLE;
  if (events & MK_WRITE) uev |= UV_WRITABLE;
  /* uv_poll_start (libuv 1.44) deletes and re-adds the fd in epoll on every call, even
   * with the mask it has: call libuv only when the mask changes */
  if (uev == io->armed) return 0;
  if (uev == 0) {
    io->armed = 0;
    return uv_poll_stop(&io->poll);
  }
  rc = uv_poll_start(&io->poll, uev, io_cb);
  io->armed = rc < 0 ? 0 : uev; /* a failed start leaves the watcher stopped */
  return rc;
}

void mk_io_keepalive(mk_io *io, int on) {
  if (on)
    uv_ref((uv_handle_t *)&io->poll);
  else
    uv_unref((uv_handle_t *)&io->poll);
}

void mk_io_close(mk_io *io) {
  if (io) uv_close((uv_handle_t *)&io->poll, free_handle);
}

static void timer_cb(uv_timer_t *t) {
  mk_timer *mt = (mk_timer *)t;
  mt->cb(mt->ud);
}

mk_timer *mk_timer_new(mk_loop *loop, mk_timer_fn cb, void *ud) {
  mk_timer *t = malloc(sizeof *t);
  if (!t) return NULL;
  if (uv_timer_init(loop, &t->timer) < 0) { /* cannot fail on Linux; checked anyway */
    free(t);
    return NULL;
  }
  t->timer.data = NULL;
  t->cb = cb;
  t->ud = ud;
  return t;
}

int mk_timer_start(mk_timer *t, uint64_t ms) {
  /* libuv's clock is cached at the start of a loop turn: Lua code may have run for a
   * while since, and a timeout must count from now */
  uv_update_time(t->timer.loop);
  return uv_timer_start(&t->timer, timer_cb, ms, 0);
}

void mk_timer_stop(mk_timer *t) {
  if (t) uv_timer_stop(&t->timer);
}

void mk_timer_keepalive(mk_timer *t, int on) {
  if (on)
    uv_ref((uv_handle_t *)&t->timer);
  else
    uv_unref((uv_handle_t *)&t->timer);
}

void mk_timer_close(mk_timer *t) {
  if (t) uv_close((uv_handle_t *)&t->timer, free_handle);
}

mk_loop *mk_loop_default(void) { return uv_default_loop(); }

int mk_loop_run(mk_loop *loop, int once) { return uv_run(loop, once ? UV_RUN_ONCE : UV_RUN_DEFAULT); }

uint64_t mk_loop_now(mk_loop *loop) { return uv_now(loop); }

const char *mk_loop_strerror(int err) { return uv_strerror(err); }

struct mk_async {
  uv_async_t async;
  mk_async_fn cb;
  void *ud;
};

static void async_cb(uv_async_t *h) {
  mk_async *a = (mk_async *)h;
  a->cb(a->ud);
}

mk_async *mk_async_new(mk_loop *loop, mk_async_fn cb, void *ud) {
  mk_async *a = malloc(sizeof *a);
  if (!a) return NULL;
  if (uv_async_init(loop, &a->async, async_cb) < 0) { /* not registered when it fails */
    free(a);
    return NULL;
  }
  a->async.data = NULL;
  a->cb = cb;
  a->ud = ud;
  uv_unref((uv_handle_t *)&a->async);
  return a;
}

int mk_async_send(mk_async *a) { return uv_async_send(&a->async); }

void mk_async_keepalive(mk_async *a, int on) {
  if (on)
    uv_ref((uv_handle_t *)&a->async);
  else
    uv_unref((uv_handle_t *)&a->async);
}

void mk_async_close(mk_async *a) {
  if (a) uv_close((uv_handle_t *)&a->async, free_handle);
}

/* A lookup: the request is libuv's until its callback, which frees it. cancelled says
 * the owner is gone. */
struct mk_resolve {
  uv_getaddrinfo_t req;
  mk_resolve_fn cb;
  void *ud;
  int cancelled;
};

/* Appends the numeric form of each TCP address of res to a malloc'd, comma-separated
 * string; NULL when memory ran out or there is none. */
static char *join_addrs(const struct addrinfo *res) {
  size_t cap = 0, len = 0;
  char *out = NULL;
  const struct addrinfo *ai;
  for (ai = res; ai; ai = ai->ai_next) {
    char ip[64];
    size_t n;
    int rc;
    if (ai->ai_family == AF_INET)
      rc = uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
    else if (ai->ai_family == AF_INET6)
      rc = uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
    else
      continue;
    if (rc != 0) continue;
    n = strlen(ip);
    if (len + n + 2 > cap) {
      size_t ncap = (len + n + 2) * 2;
      char *p = realloc(out, ncap);
      if (!p) {
        free(out);
        return NULL;
      }
      out = p;
      cap = ncap;
    }
    if (len) out[len++] = ',';
    memcpy(out + len, ip, n);
    len += n;
    out[len] = '\0';
  }
  return out;
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  mk_resolve *r = (mk_resolve *)req;
  char *addrs = NULL;
  if (!r->cancelled) {
    if (status == 0 && !(addrs = join_addrs(res))) status = res ? UV_ENOMEM : UV_EAI_NONAME;
    r->cb(r->ud, status, status == 0 ? addrs : NULL);
  }
  free(addrs);
  uv_freeaddrinfo(res);
  free(r);
}

mk_resolve *mk_resolve_start(mk_loop *loop, const char *host, mk_resolve_fn cb, void *ud, int *err) {
  mk_resolve *r = malloc(sizeof *r);
  struct addrinfo hints;
  int rc;
  if (!r) {
    if (err) *err = UV_ENOMEM;
    return NULL;
  }
  r->cb = cb;
  r->ud = ud;
  r->cancelled = 0;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC; /* as libpq asks */
  hints.ai_socktype = SOCK_STREAM;
  rc = uv_getaddrinfo(loop, &r->req, resolve_cb, host, NULL, &hints);
  if (rc < 0) {
    free(r);
    if (err) *err = rc;
    return NULL;
  }
  return r;
}

void mk_resolve_cancel(mk_resolve *r) {
  if (!r) return;
  r->cancelled = 1;
  (void)uv_cancel((uv_req_t *)&r->req); /* fails once the lookup runs: it then ends alone */
}

uint64_t mk_clock_us(void) { return uv_hrtime() / 1000u; }

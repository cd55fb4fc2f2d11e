/* tcproxy/proxy.c — the client listener, the pairs and the forwarding between them.
 *
 * A pair is one accepted client and the upstream connection made for it. Each of its two
 * sides owns the queue of chunks waiting to be written TO it, a timer for delayed chunks,
 * and a shutdown request. Data read from one side becomes a chunk queued on the other.
 *
 * - Backpressure: a side's queue counts chunks held back (stall, delay, not yet
 *   connected) and chunks being written. Above TP_QUEUE_HIGH bytes, reading from the
 *   peer stops; below TP_QUEUE_LOW it starts again.
 * - End of stream: an EOF from one side shuts down the other side's write half once its
 *   queue is written; a pair whose two halves are both shut down closes. A read or
 *   write error, a failed upstream connect, "drop" and stopping reset the pair.
 * - Lifetime: a pair has four handles (two TCP, two timers) and is freed by the close
 *   callback of the last one. libuv runs the callbacks of a handle's pending requests
 *   (writes, connect, shutdown, with UV_ECANCELED) before its close callback, so a
 *   request callback always finds its pair alive. */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct tp_side tp_side;

/* Bytes read from one side, on their way to the other. */
typedef struct tp_chunk {
  struct tp_chunk *next;
  uv_write_t req;
  tp_side *dest; /* the side it is written to */
  uint64_t due;  /* loop time (ms) from which it may be written */
  size_t len;
  char data[];
} tp_chunk;

/* What one chunk counts for in a queue: its bytes and its bookkeeping. */
#define CHUNK_COST(c) ((c)->len + sizeof(tp_chunk))

struct tp_side {
  uv_tcp_t tcp;
  uv_timer_t timer;     /* wakes the queue up when its head chunk is due */
  uv_shutdown_t shutdown;
  tp_pair *pair;
  tp_side *peer;
  int upstream;         /* 1 for the upstream side, 0 for the client side */
  int connected;        /* writes may start */
  int reading;          /* uv_read_start is in force */
  int paused;           /* reading stopped for backpressure */
  int eof;              /* this side sent EOF: nothing more comes from it */
  int shut_sent;        /* uv_shutdown was requested on this side */
  int shut_done;        /* ... and completed */
  tp_chunk *head, *tail; /* held chunks, not yet handed to uv_write */
  size_t queued;         /* cost of the held chunks and of those being written */
};

struct tp_pair {
  tp_proxy *proxy;
  tp_pair *prev, *next;
  tp_side client, up;
  uv_connect_t connect;
  int closing;
  int open_handles;
};

/* A client refused at once ("refuse on"): accepted only to be reset. */
typedef struct tp_refused {
  uv_tcp_t tcp;
} tp_refused;

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static void pair_close(tp_pair *pair, int reset);
static void pump(tp_side *dest);

void tp_log_uv(const char *what, int err) {
  fprintf(stderr, "tcproxy: %s: %s\n", what, uv_strerror(err));
}

int tp_bound_port(const uv_tcp_t *tcp) {
  struct sockaddr_storage ss;
  int len = (int)sizeof ss;
  int rc = uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len);
  if (rc < 0) return rc;
  if (ss.ss_family != AF_INET) return UV_EAFNOSUPPORT;
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Reading */

static void start_reading(tp_side *side);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tp_chunk *c = malloc(sizeof(tp_chunk) + TP_READ_SIZE);
  (void)h;
  (void)suggested;
  if (!c) {
    *buf = uv_buf_init(NULL, 0); /* the read callback gets UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init(c->data, TP_READ_SIZE);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tp_side *src = CONTAINER_OF(s, tp_side, tcp);
  tp_side *dest = src->peer;
  tp_chunk *c = buf->base ? CONTAINER_OF(buf->base, tp_chunk, data) : NULL;
  if (nread <= 0 || src->pair->closing) {
    free(c);
    if (nread == UV_EOF) {
      src->eof = 1;
      src->reading = 0;
      (void)uv_read_stop(s); /* cannot fail on a TCP handle; libuv stopped it already */
      pump(dest);            /* shuts the peer's write half down once its queue is out */
    } else if (nread < 0) {
      pair_close(src->pair, 1);
    }
    return;
  }
  /* A short read keeps only what it needs: many small chunks must not pin 64 KiB each. */
  if ((size_t)nread < TP_READ_SIZE / 2) {
    tp_chunk *smaller = realloc(c, sizeof(tp_chunk) + (size_t)nread);
    if (smaller) c = smaller;
  }
  c->next = NULL;
  c->dest = dest;
  c->len = (size_t)nread;
  c->due = uv_now(src->tcp.loop) + src->pair->proxy->delay_ms;
  if (dest->tail) dest->tail->next = c;
  else dest->head = c;
  dest->tail = c;
  dest->queued += CHUNK_COST(c);
  if (dest->queued > TP_QUEUE_HIGH && src->reading) {
    (void)uv_read_stop(s);
    src->reading = 0;
    src->paused = 1;
  }
  pump(dest);
}

static void start_reading(tp_side *side) {
  int rc = uv_read_start((uv_stream_t *)&side->tcp, on_alloc, on_read);
  if (rc < 0) {
    tp_log_uv("read start", rc);
    pair_close(side->pair, 1);
    return;
  }
  side->reading = 1;
  side->paused = 0;
}

/* Writing */

static void on_shutdown(uv_shutdown_t *req, int status) {
  tp_side *side = CONTAINER_OF(req, tp_side, shutdown);
  tp_pair *pair = side->pair;
  if (pair->closing) return;
  if (status < 0) {
    pair_close(pair, 1);
    return;
  }
  side->shut_done = 1;
  if (pair->client.shut_done && pair->up.shut_done) pair_close(pair, 0);
}

static void on_write(uv_write_t *req, int status) {
  tp_chunk *c = CONTAINER_OF(req, tp_chunk, req);
  tp_side *dest = c->dest;
  tp_side *src = dest->peer;
  tp_pair *pair = dest->pair;
  dest->queued -= CHUNK_COST(c);
  if (status == 0) {
    if (dest->upstream) pair->proxy->bytes_up += c->len;
    else pair->proxy->bytes_down += c->len;
  }
  free(c);
  if (pair->closing) return;
  if (status < 0) {
    pair_close(pair, 1);
    return;
  }
  if (src->paused && !src->eof && dest->queued <= TP_QUEUE_LOW) start_reading(src);
}

static void on_due(uv_timer_t *t) {
  pump(CONTAINER_OF(t, tp_side, timer));
}

/* Hands the due chunks of dest's queue to uv_write, arms the timer for the next one,
 * and shuts dest's write half down when its peer has ended and everything is out. */
static void pump(tp_side *dest) {
  tp_pair *pair = dest->pair;
  tp_proxy *p = pair->proxy;
  uint64_t now;
  int rc;
  if (pair->closing || !dest->connected || p->stall) return;
  now = uv_now(p->loop);
  while (dest->head && dest->head->due <= now) {
    tp_chunk *c = dest->head;
    uv_buf_t buf = uv_buf_init(c->data, (unsigned int)c->len);
    dest->head = c->next;
    if (!dest->head) dest->tail = NULL;
    c->next = NULL;
    rc = uv_write(&c->req, (uv_stream_t *)&dest->tcp, &buf, 1, on_write);
    if (rc < 0) {
      dest->queued -= CHUNK_COST(c);
      free(c);
      pair_close(pair, 1);
      return;
    }
  }
  if (dest->head) {
    rc = uv_timer_start(&dest->timer, on_due, dest->head->due - now, 0);
    if (rc < 0) {
      tp_log_uv("timer start", rc);
      pair_close(pair, 1);
    }
    return;
  }
  if (dest->peer->eof && !dest->shut_sent) {
    /* uv_shutdown waits for the writes still in progress */
    rc = uv_shutdown(&dest->shutdown, (uv_stream_t *)&dest->tcp, on_shutdown);
    if (rc < 0) {
      pair_close(pair, 1);
      return;
    }
    dest->shut_sent = 1;
  }
}

/* Pairs */

static void free_queue(tp_side *side) {
  while (side->head) {
    tp_chunk *c = side->head;
    side->head = c->next;
    free(c);
  }
  side->tail = NULL;
}

static void on_pair_handle_closed(uv_handle_t *h) {
  tp_pair *pair = h->data;
  if (--pair->open_handles > 0) return;
  free_queue(&pair->client);
  free_queue(&pair->up);
  free(pair);
}

static void close_tcp(tp_side *side, int reset) {
  uv_handle_t *h = (uv_handle_t *)&side->tcp;
  /* a reset is refused while a shutdown is pending; a plain close does then */
  if (reset && !side->shut_sent && uv_tcp_close_reset(&side->tcp, on_pair_handle_closed) == 0) return;
  uv_close(h, on_pair_handle_closed);
}

/* Closes both sockets (reset: RST instead of FIN) and the timers; the last close
 * callback frees the pair. Chunks still held are dropped. */
static void pair_close(tp_pair *pair, int reset) {
  tp_proxy *p = pair->proxy;
  if (pair->closing) return;
  pair->closing = 1;
  if (pair->prev) pair->prev->next = pair->next;
  else p->pairs = pair->next;
  if (pair->next) pair->next->prev = pair->prev;
  pair->prev = pair->next = NULL;
  p->npairs--;
  close_tcp(&pair->client, reset);
  close_tcp(&pair->up, reset);
  uv_close((uv_handle_t *)&pair->client.timer, on_pair_handle_closed);
  uv_close((uv_handle_t *)&pair->up.timer, on_pair_handle_closed);
}

static void on_upstream_connected(uv_connect_t *req, int status) {
  tp_pair *pair = CONTAINER_OF(req, tp_pair, connect);
  int rc;
  if (pair->closing) return;
  if (status < 0) {
    pair_close(pair, 1); /* the client sees a reset: nothing to talk to */
    return;
  }
  pair->up.connected = 1;
  rc = uv_tcp_nodelay(&pair->up.tcp, 1);
  if (rc < 0) {
    tp_log_uv("upstream nodelay", rc);
    pair_close(pair, 1);
    return;
  }
  start_reading(&pair->up);
  pump(&pair->up); /* what the client sent meanwhile */
}

static int side_init(uv_loop_t *loop, tp_pair *pair, tp_side *side, tp_side *peer, int upstream) {
  int rc;
  side->pair = pair;
  side->peer = peer;
  side->upstream = upstream;
  rc = uv_tcp_init(loop, &side->tcp);
  if (rc < 0) return rc;
  side->tcp.data = pair;
  pair->open_handles++;
  rc = uv_timer_init(loop, &side->timer);
  if (rc < 0) return rc;
  side->timer.data = pair;
  pair->open_handles++;
  return 0;
}

/* Closes what side_init opened of a pair that never went live; the last close callback
 * (or this function, when nothing was opened) frees it. */
static void pair_abort(tp_pair *pair) {
  /* side_init opens these in this order and counts each one in open_handles */
  uv_handle_t *opened[4] = {(uv_handle_t *)&pair->client.tcp, (uv_handle_t *)&pair->client.timer,
                            (uv_handle_t *)&pair->up.tcp, (uv_handle_t *)&pair->up.timer};
  int i, n = pair->open_handles;
  pair->closing = 1;
  if (n == 0) {
    free(pair);
    return;
  }
  for (i = 0; i < n; i++) uv_close(opened[i], on_pair_handle_closed);
}

/* Resets a client that is accepted only to be turned away. */
static void on_refused_closed(uv_handle_t *h) {
  free(CONTAINER_OF(h, tp_refused, tcp));
}

/* Returns a negative libuv error only when the client could not even be accepted. */
static int refuse_client(tp_proxy *p, uv_stream_t *server) {
  tp_refused *r = malloc(sizeof *r);
  int rc;
  if (!r) return UV_ENOMEM;
  rc = uv_tcp_init(p->loop, &r->tcp);
  if (rc < 0) {
    free(r);
    return rc;
  }
  rc = uv_accept(server, (uv_stream_t *)&r->tcp);
  if (rc < 0) {
    tp_log_uv("accept", rc);
    uv_close((uv_handle_t *)&r->tcp, on_refused_closed);
    return 0;
  }
  p->refused++;
  if (uv_tcp_close_reset(&r->tcp, on_refused_closed) < 0) uv_close((uv_handle_t *)&r->tcp, on_refused_closed);
  return 0;
}

static void on_client(uv_stream_t *server, int status) {
  tp_proxy *p = server->data;
  tp_pair *pair;
  int rc;
  if (status < 0) {
    tp_log_uv("accept", status);
    return;
  }
  if (p->stopping) return;
  if (p->refuse) {
    rc = refuse_client(p, server);
    if (rc < 0) {
      tp_log_uv("refuse", rc);
      p->stop(p, 1); /* an unaccepted client would stall the listener for good */
    }
    return;
  }
  pair = calloc(1, sizeof *pair);
  if (!pair) {
    tp_log_uv("new pair", UV_ENOMEM);
    p->stop(p, 1);
    return;
  }
  pair->proxy = p;
  if ((rc = side_init(p->loop, pair, &pair->client, &pair->up, 0)) < 0 ||
      (rc = side_init(p->loop, pair, &pair->up, &pair->client, 1)) < 0) {
    tp_log_uv("new pair", rc);
    pair_abort(pair);
    p->stop(p, 1);
    return;
  }
  rc = uv_accept(server, (uv_stream_t *)&pair->client.tcp);
  if (rc < 0) {
    tp_log_uv("accept", rc);
    pair_abort(pair);
    return;
  }
  p->accepted++;
  p->npairs++;
  pair->next = p->pairs;
  if (p->pairs) p->pairs->prev = pair;
  p->pairs = pair;
  pair->client.connected = 1;
  rc = uv_tcp_nodelay(&pair->client.tcp, 1);
  if (rc < 0) {
    tp_log_uv("client nodelay", rc);
    pair_close(pair, 1);
    return;
  }
  rc = uv_tcp_connect(&pair->connect, &pair->up.tcp, (const struct sockaddr *)&p->upstream,
                      on_upstream_connected);
  if (rc < 0) {
    tp_log_uv("upstream connect", rc);
    pair_close(pair, 1);
    return;
  }
  start_reading(&pair->client);
}

/* The listener and the control operations */

int tp_proxy_listen(tp_proxy *p, const struct sockaddr_in *addr) {
  int rc = uv_tcp_init(p->loop, &p->listener);
  if (rc < 0) return rc;
  p->listener.data = p;
  p->listening = 1;
  rc = uv_tcp_bind(&p->listener, (const struct sockaddr *)addr, 0);
  if (rc < 0) return rc;
  return uv_listen((uv_stream_t *)&p->listener, 128, on_client);
}

void tp_proxy_close(tp_proxy *p) {
  (void)tp_proxy_drop(p);
  if (p->listening) {
    p->listening = 0;
    uv_close((uv_handle_t *)&p->listener, NULL);
  }
}

uint64_t tp_proxy_drop(tp_proxy *p) {
  uint64_t n = 0;
  while (p->pairs) { /* pair_close unlinks the pair */
    pair_close(p->pairs, 1);
    n++;
  }
  return n;
}

void tp_proxy_set_stall(tp_proxy *p, int on) {
  tp_pair *pair, *next;
  p->stall = on;
  if (on) return;
  for (pair = p->pairs; pair; pair = next) {
    next = pair->next; /* pump may close the pair */
    pump(&pair->up);
    if (!pair->closing) pump(&pair->client);
  }
}

void tp_proxy_set_delay(tp_proxy *p, uint64_t ms) {
  p->delay_ms = ms; /* chunks already queued keep their due time */
}

/* mk_pool: the connection pool (see mk_pool.h).
 *
 * Connections (mk_pconn) are in one list; free ones also sit on a free list, most
 * recently used first (acquire takes the head, shrink closes from the tail). Requests
 * and getconn calls that find no free connection wait in one FIFO (mk_wait). A request
 * handed to a connection keeps its mk_wait until it completes: the pool's completion
 * callback decides on replay, gives the connection back, then hands the request to
 * its submitter.
 *
 * With opts.pipeline, a busy connection may carry several of the pool's requests (its
 * mk_wait entries are on the connection's reqs list, counted in nreq); see dispatch.
 *
 * Entries from libuv and from the owner run between enter() and leave(); the pool and
 * connection entries are freed only at the outermost leave() (gone flags mark them). */
#include "mk_pool.h"

#include "mk_sql.h"

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum pc_state {
  PC_CONNECTING,
  PC_SETUP,     /* connected; the owner's setup hook runs */
  PC_FREE,
  PC_BUSY,      /* running pool requests (one, or with pipeline up to pipeline_depth) */
  PC_RESERVED,  /* handed out by getconn (pinging first, or with the caller) */
  PC_RETURNING, /* back from the caller, rolling back its open transaction */
  PC_GONE,      /* discarded: off every list, freed at the outermost leave() */
};

struct mk_pconn {
  mk_pool *pool;
  mk_conn *c;
  enum pc_state state;
  int initial; /* one of the connections of connect(): counted for its outcome */
  int replacement; /* opened to replace a dead connection (counted in reconnects) */
  int grown;       /* opened past size for waiting requests */
  uint64_t opened_us; /* with an event hook: when its connect began (mk_clock_us) */
  uint64_t last_used;
  uint64_t checked;  /* monotonic us when its socket was last known to hold nothing unread */
  struct mk_wait *w; /* the getconn waiter pinging on it (PC_RESERVED) */
  struct mk_wait *reqs; /* the pool's requests on it (PC_BUSY) */
  int nreq;             /* how many */
  int alone;            /* one of them runs alone (a transaction): nothing joins it */
  mk_req *rollback;  /* the ROLLBACK of PC_RETURNING */
  int give_back_later; /* putconn_later: given back by the later timer */
  uint64_t expires;    /* loop time when max_lifetime ends (0: not set, or none) */
  mk_pconn *next, *prev;   /* p->conns; next also links p->gone */
  mk_pconn *fnext, *fprev; /* p->free_head.. (PC_FREE only) */
};

typedef struct mk_wait {
  struct mk_wait *next, *prev; /* p->wait_head.. while queued */
  mk_pool *pool;
  int queued;
  mk_req *r;               /* a request; NULL for getconn */
  mk_req_done_fn done;     /* the submitter's, restored before handing r back */
  void *ud;
  mk_pool_got_fn got;      /* getconn */
  int ping;
  mk_req *ping_req;        /* getconn's ping in flight */
  mk_pconn *pc;            /* the connection it runs or pings on */
  struct mk_wait *pnext, *pprev; /* pc->reqs while a request runs on pc */
  int retried;
  mk_timer *timer;         /* acquire_timeout: armed while queued, closed at the end */
  uint64_t waited;         /* ms spent queued before the current stay */
  uint64_t since;          /* loop time the current stay in the queue began */
} mk_wait;

struct mk_pool {
  mk_loop *loop;
  mk_pool_opts o;
  char *conninfo;
  char **setsession;
  mk_pool_hooks hooks;
  void *ud;
  int started, closed, released, depth;
  mk_pconn *conns;
  mk_pconn *free_head, *free_tail;
  mk_wait *wait_head, *wait_tail;
  int nwaiting, nconnecting, nalive;
  int initial_left, initial_failed; /* connect(): attempts not ended yet, and failed */
  int down; /* the last connect attempt failed: connections are reopened one at a time,
             * every reconnect_interval, until one attempt succeeds */
  char last_error[256];
  char unavailable[320]; /* admit's DatabaseNotAvailable message */
  mk_timer *reconnect_timer;
  int reconnect_armed;
  mk_timer *shrink_timer;
  mk_timer *later_timer; /* gives back what putconn_later marked */
  int later_unarmed;     /* its start failed: dispatch tries again */
  mk_timer *lifetime_timer; /* closes free connections whose max_lifetime ended */
  uint64_t lifetime_due;    /* when lifetime_timer fires (0: not armed) */
  uint64_t rng;             /* xorshift state for the lifetime jitter */
  mk_pconn *gone;           /* discarded entries, freed at the outermost leave() */
  mk_pool_stats counters;
};

static void dispatch(mk_pool *p);
static void keep_size(mk_pool *p);
static void check_available(mk_pool *p);
static void give_back(mk_pool *p, mk_pconn *pc);
static void pc_conn_connected(mk_conn *c, const mk_error *err, void *ud);
static void pc_conn_notice(mk_conn *c, const char *msg, void *ud);
static void pc_conn_lost(mk_conn *c, void *ud);
static void on_lifetime_timer(void *ud);

static const mk_conn_hooks pc_hooks = {pc_conn_connected, pc_conn_notice, pc_conn_lost, NULL};

static void enter(mk_pool *p) { p->depth++; }

/* Reports an event to the owner, if it asked for them (hooks.event). Callers are loop
 * callbacks at a point where the pool is consistent: the hook may re-enter it. */
static void emit(mk_pool *p, mk_pool_event ev, double ms, const mk_error *err) {
  if (p->hooks.event) p->hooks.event(p, ev, ms, err, p->ud);
}

/* Milliseconds since pc's connect began. */
static double connect_ms(const mk_pconn *pc) { return (double)(mk_clock_us() - pc->opened_us) / 1000.0; }

static void free_pool(mk_pool *p);

static void free_gone(mk_pool *p) {
  while (p->gone) {
    mk_pconn *pc = p->gone;
    p->gone = pc->next;
    free(pc);
  }
}

/* Entries discarded inside a call chain stay allocated (PC_GONE) until it unwinds: a
 * callback further up (a putconn from a done callback) may still look at them. */
static void leave(mk_pool *p) {
  if (--p->depth > 0) return;
  free_gone(p);
  if (p->released) free_pool(p);
}

/* Lists */

static void free_push(mk_pool *p, mk_pconn *pc) {
  pc->fprev = NULL;
  pc->fnext = p->free_head;
  if (p->free_head) p->free_head->fprev = pc;
  else p->free_tail = pc;
  p->free_head = pc;
}

static void free_unlink(mk_pool *p, mk_pconn *pc) {
  if (pc->fprev) pc->fprev->fnext = pc->fnext;
  else p->free_head = pc->fnext;
  if (pc->fnext) pc->fnext->fprev = pc->fprev;
  else p->free_tail = pc->fprev;
  pc->fnext = pc->fprev = NULL;
}

static void wait_push(mk_pool *p, mk_wait *w, int front) {
  w->queued = 1;
  p->nwaiting++;
  if (front) {
    w->prev = NULL;
    w->next = p->wait_head;
    if (p->wait_head) p->wait_head->prev = w;
    else p->wait_tail = w;
    p->wait_head = w;
  } else {
    w->next = NULL;
    w->prev = p->wait_tail;
    if (p->wait_tail) p->wait_tail->next = w;
    else p->wait_head = w;
    p->wait_tail = w;
  }
}

static void wait_unlink(mk_pool *p, mk_wait *w) {
  if (!w->queued) return;
  if (w->prev) w->prev->next = w->next;
  else p->wait_head = w->next;
  if (w->next) w->next->prev = w->prev;
  else p->wait_tail = w->prev;
  w->next = w->prev = NULL;
  w->queued = 0;
  p->nwaiting--;
}

/* Waiters */

static void wait_stop_timer(mk_wait *w) {
  mk_timer_close(w->timer);
  w->timer = NULL;
}

/* Starts w's acquire_timeout for what is left of it: the time spent queued counts in
 * total, over every stay in the queue (a replay or a failed ping queues w again).
 * Returns 0 or a negative libuv error. */
static int wait_arm(mk_pool *p, mk_wait *w) {
  uint64_t limit = (uint64_t)p->o.acquire_timeout_ms;
  int rc;
  if (!w->timer) return 0;
  rc = mk_timer_start(w->timer, w->waited < limit ? limit - w->waited : 0);
  w->since = mk_loop_now(p->loop); /* mk_timer_start brought the clock up to date */
  return rc;
}

/* w leaves the queue for a connection: its acquire_timeout pauses. */
static void wait_pause(mk_pool *p, mk_wait *w) {
  uint64_t now = mk_loop_now(p->loop);
  if (!w->timer) return;
  mk_timer_stop(w->timer);
  if (now > w->since) w->waited += now - w->since;
}

/* Ends w with err (NULL: success for a request, whose r carries its outcome). Frees w;
 * calls back the owner. */
static void finish(mk_pool *p, mk_wait *w, mk_kind kind, const char *msg) {
  wait_unlink(p, w);
  wait_stop_timer(w);
  if (w->r) {
    mk_req *r = w->r;
    mk_req_done_fn done = w->done;
    void *ud = w->ud;
    if (kind != MK_ERR_NONE) mk_req_fail(r, kind, msg);
    mk_req_set_done(r, done, ud);
    free(w);
    done(r, ud);
  } else {
    mk_pool_got_fn got = w->got;
    void *ud = w->ud;
    mk_error e;
    free(w);
    mk_error_set(&e, kind, msg);
    got(p, NULL, &e, ud);
    mk_error_clear(&e);
  }
}

/* Fails every waiter (requests and getconns) with kind and msg. */
static void fail_waiters(mk_pool *p, mk_kind kind, const char *msg) {
  while (p->wait_head) finish(p, p->wait_head, kind, msg);
}

/* Puts w back at the head of the queue (its connection died or could not take it),
 * with the rest of its acquire_timeout; if that cannot be armed, w fails now rather
 * than wait without limit. */
static void requeue(mk_pool *p, mk_wait *w) {
  int rc;
  wait_push(p, w, 1);
  if ((rc = wait_arm(p, w)) < 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "could not start the acquire_timeout timer: %s", mk_loop_strerror(rc));
    finish(p, w, MK_ERR_INTERFACE, msg);
  }
}

static void on_acquire_timeout(void *ud) {
  mk_wait *w = ud;
  mk_pool *p = w->pool;
  char msg[96];
  enter(p);
  p->counters.timeouts++;
  snprintf(msg, sizeof msg, "no connection available within %d ms (acquire_timeout)", p->o.acquire_timeout_ms);
  finish(p, w, MK_ERR_TIMEOUT, msg);
  if (p->hooks.event) {
    mk_error e;
    mk_error_set(&e, MK_ERR_TIMEOUT, msg);
    emit(p, MK_POOL_EV_ACQUIRE_TIMEOUT, (double)p->o.acquire_timeout_ms, &e);
    mk_error_clear(&e);
  }
  leave(p);
}

/* Connections */

static int alive(const mk_pconn *pc) { return pc->state != PC_CONNECTING; }

static void orphan_rollback_done(mk_req *r, void *ud) {
  (void)ud;
  mk_req_free(r);
}

static void req_link(mk_pconn *pc, mk_wait *w) {
  w->pc = pc;
  w->pprev = NULL;
  w->pnext = pc->reqs;
  if (pc->reqs) pc->reqs->pprev = w;
  pc->reqs = w;
  pc->nreq++;
}

static void req_unlink(mk_pconn *pc, mk_wait *w) {
  if (w->pprev) w->pprev->pnext = w->pnext;
  else pc->reqs = w->pnext;
  if (w->pnext) w->pnext->pprev = w->pprev;
  w->pnext = w->pprev = NULL;
  w->pc = NULL;
  if (--pc->nreq == 0) pc->alone = 0;
}

/* Forgets pc and closes its connection. What still runs on it completes during the
 * close (or, when the connection died, right after the callback that called this);
 * its waiters are detached first, so that each completion sees a discarded entry. */
static void discard(mk_pool *p, mk_pconn *pc) {
  if (pc->state == PC_GONE) return; /* a callback of the release below came back to it */
  if (pc->w) pc->w->pc = NULL;
  pc->w = NULL;
  while (pc->reqs) req_unlink(pc, pc->reqs);
  if (pc->rollback) mk_req_set_done(pc->rollback, orphan_rollback_done, NULL);
  if (pc->state == PC_FREE) free_unlink(p, pc);
  if (pc->state == PC_CONNECTING) p->nconnecting--;
  else p->nalive--;
  if (pc->prev) pc->prev->next = pc->next;
  else p->conns = pc->next;
  if (pc->next) pc->next->prev = pc->prev;
  /* Gone before anything runs: a putconn or discard of it from a callback of the
   * release is refused; the entry is freed once the outermost call returns. */
  pc->state = PC_GONE;
  pc->prev = NULL;
  pc->next = p->gone;
  p->gone = pc;
  mk_conn_release(pc->c); /* completes what still runs on it; no hook calls any more */
}

enum { OPEN_INITIAL, OPEN_REPLACE, OPEN_GROW };

/* One of connect()'s connections ended its first attempt (initial: it was one). When
 * the last one did, connect() ends. Callers have made every connection that opened
 * free first: when connect() resolves, they are there for the requests that follow. */
static void initial_done(mk_pool *p, int initial, int failed) {
  if (!initial) return;
  if (p->initial_left <= 0) return; /* close() already ended connect() */
  if (failed) p->initial_failed++;
  if (--p->initial_left > 0 || !p->hooks.connected) return;
  if (p->initial_failed > 0 && p->o.raise_connect_errors) {
    char msg[400];
    mk_error e;
    snprintf(msg, sizeof msg, "%d of %d connections could not be opened: %s", p->initial_failed,
             p->o.size, p->last_error);
    mk_error_set(&e, MK_ERR_PARTIAL, msg);
    p->hooks.connected(p, &e, p->ud);
    mk_error_clear(&e);
  } else {
    p->hooks.connected(p, NULL, p->ud);
  }
}

/* pc's initial flag, cleared: it counts for connect() once. */
static int take_initial(mk_pconn *pc) {
  int initial = pc->initial;
  pc->initial = 0;
  return initial;
}

/* Opens one connection. When memory runs out, that counts as a failed attempt (the
 * next one waits reconnect_interval), so that connect() and waiters still end. */
static void open_conn(mk_pool *p, int why) {
  mk_pconn *pc = calloc(1, sizeof *pc);
  if (pc) {
    pc->c = mk_conn_new(p->loop, &pc_hooks, pc);
    if (!pc->c) {
      free(pc);
      pc = NULL;
    } else {
      mk_conn_set_pipeline(pc->c, p->o.pipeline);
      mk_conn_set_statement_cache(pc->c, p->o.statement_cache_size);
    }
  }
  if (!pc) {
    snprintf(p->last_error, sizeof p->last_error, "out of memory");
    p->down = 1;
    initial_done(p, why == OPEN_INITIAL, 1);
    return;
  }
  pc->pool = p;
  pc->initial = why == OPEN_INITIAL;
  pc->replacement = why == OPEN_REPLACE;
  pc->grown = why == OPEN_GROW;
  if (p->hooks.event) pc->opened_us = mk_clock_us();
  pc->state = PC_CONNECTING;
  pc->next = p->conns;
  if (p->conns) p->conns->prev = pc;
  p->conns = pc;
  p->nconnecting++;
  mk_conn_connect(pc->c, p->conninfo, (const char *const *)p->setsession, p->o.nsetsession);
}

/* A step of the xorshift64 generator (the jitter needs no quality, only spread). */
static uint64_t next_random(mk_pool *p) {
  uint64_t x = p->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  p->rng = x;
  return x;
}

/* Arms the lifetime timer for the earliest end of life among free connections (busy
 * ones are looked at when they come back). */
static void arm_lifetime(mk_pool *p) {
  const mk_pconn *pc;
  uint64_t due = 0, now;
  if (p->o.max_lifetime_ms <= 0 || p->closed) return;
  for (pc = p->free_head; pc; pc = pc->fnext)
    if (pc->expires && (!due || pc->expires < due)) due = pc->expires;
  if (due == p->lifetime_due) return;
  p->lifetime_due = due;
  if (!due) {
    mk_timer_stop(p->lifetime_timer);
    return;
  }
  now = mk_loop_now(p->loop);
  if (mk_timer_start(p->lifetime_timer, due > now ? due - now : 0) < 0) p->lifetime_due = 0;
}

/* 1 if pc lived past max_lifetime. */
static int expired(const mk_pool *p, const mk_pconn *pc) {
  return p->o.max_lifetime_ms > 0 && pc->expires && mk_loop_now(p->loop) >= pc->expires;
}

static void became_free(mk_pool *p, mk_pconn *pc) {
  if (p->o.max_lifetime_ms > 0 && !pc->expires) {
    /* counted from the first time it is ready, less up to 5 % so that connections
     * opened together do not all end together */
    uint64_t life = (uint64_t)p->o.max_lifetime_ms;
    uint64_t jitter = next_random(p) % (life / 20 + 1);
    pc->expires = mk_loop_now(p->loop) + life - jitter;
    if (!pc->expires) pc->expires = 1;
  }
  if (expired(p, pc)) { /* it ran its last request: replaced, as when it dies */
    discard(p, pc);
    keep_size(p);
    dispatch(p);
    return;
  }
  pc->state = PC_FREE;
  pc->w = NULL;
  pc->last_used = mk_loop_now(p->loop);
  free_push(p, pc);
  if (pc->expires && (!p->lifetime_due || pc->expires < p->lifetime_due)) arm_lifetime(p);
  dispatch(p);
}

/* Closes the free connections whose lifetime ended, and opens their replacements. */
static void on_lifetime_timer(void *ud) {
  mk_pool *p = ud;
  mk_pconn *pc;
  int any = 0;
  enter(p);
  p->lifetime_due = 0;
  while (!p->closed) { /* discard runs callbacks: look again from the head each time */
    for (pc = p->free_head; pc && !expired(p, pc); pc = pc->fnext) {}
    if (!pc) break;
    discard(p, pc);
    any = 1;
  }
  if (any) keep_size(p);
  arm_lifetime(p);
  leave(p);
}

static void pc_conn_connected(mk_conn *c, const mk_error *err, void *ud) {
  mk_pconn *pc = ud;
  mk_pool *p = pc->pool;
  (void)c;
  enter(p);
  if (err) {
    mk_error copy;
    double ms = p->hooks.event ? connect_ms(pc) : -1;
    mk_error_set(&copy, err->kind, mk_error_message(err)); /* err ends with the connection */
    snprintf(p->last_error, sizeof p->last_error, "%s", mk_error_message(err));
    initial_done(p, take_initial(pc), 1);
    discard(p, pc);
    /* also when other connections live (the server refuses new ones: too many
     * clients, a failing setsession): the next attempt waits reconnect_interval */
    p->down = 1;
    keep_size(p);
    dispatch(p); /* with pipeline, waiters that waited for it may join busy ones */
    emit(p, MK_POOL_EV_CONNECT, ms, &copy);
    mk_error_clear(&copy);
  } else {
    int replacement = pc->replacement, grown = pc->grown;
    double ms = p->hooks.event ? connect_ms(pc) : -1;
    p->nconnecting--;
    p->nalive++;
    if (pc->replacement) p->counters.reconnects++;
    p->down = 0;
    if (p->o.setup && p->hooks.setup) {
      pc->state = PC_SETUP;
      p->hooks.setup(p, pc, p->ud);
    } else {
      int initial = take_initial(pc);
      pc->checked = mk_clock_us(); /* the handshake just read its socket */
      became_free(p, pc); /* may run callbacks: pc is not looked at again */
      keep_size(p);
      initial_done(p, initial, 0);
    }
    emit(p, MK_POOL_EV_CONNECT, ms, NULL);
    if (replacement) emit(p, MK_POOL_EV_RECONNECT, ms, NULL);
    if (grown) emit(p, MK_POOL_EV_GROW, ms, NULL);
  }
  leave(p);
}

/* Ends pc's setup (see mk_pool_setup_done); why: the failure's message, or NULL. */
static void setup_end(mk_pool *p, mk_pconn *pc, int ok, const char *why) {
  if (pc->state == PC_SETUP) {
    int initial = take_initial(pc);
    if (ok && mk_conn_state_of(pc->c) == MK_CONN_READY) {
      became_free(p, pc);
      keep_size(p);
      initial_done(p, initial, 0);
    } else {
      /* the factory failed: a failed attempt, the next one waits reconnect_interval
       * (the owner closes the connection then). Lost meanwhile with the factory
       * content: reopened at once, like any lost connection. */
      if (!ok) snprintf(p->last_error, sizeof p->last_error, "%s", why ? why : "connection setup (connection_factory) failed");
      discard(p, pc);
      if (!ok) p->down = 1;
      keep_size(p);
      initial_done(p, initial, 1);
    }
    check_available(p);
  }
}

void mk_pool_setup_done(mk_pool *p, mk_pconn *pc, int ok) {
  enter(p);
  setup_end(p, pc, ok, NULL);
  leave(p);
}

static void pc_conn_notice(mk_conn *c, const char *msg, void *ud) {
  mk_pconn *pc = ud;
  mk_pool *p = pc->pool;
  (void)c;
  if (pc->state != PC_GONE && p->hooks.notice) p->hooks.notice(p, pc, msg, p->ud);
}

/* A connection died. A free one is replaced at once; a busy or pinging one is handled
 * by its request's completion (which already ran); a reserved one waits for putconn,
 * and one in setup for mk_pool_setup_done (its owner holds pc until then). */
static void pc_conn_lost(mk_conn *c, void *ud) {
  mk_pconn *pc = ud;
  mk_pool *p = pc->pool;
  int was_there = pc->state != PC_GONE;
  (void)c;
  enter(p);
  if (pc->state == PC_FREE || pc->state == PC_RETURNING) {
    discard(p, pc);
    keep_size(p);
    check_available(p);
  }
  if (was_there) emit(p, MK_POOL_EV_LOST, -1, NULL);
  leave(p);
}

/* 1 if a connection should be opened: one of `size` is missing (*why OPEN_REPLACE), or
 * requests wait that no connection serves and max_size allows one more (OPEN_GROW). */
static int needs_conn(const mk_pool *p, int *why) {
  int total = p->nalive + p->nconnecting;
  *why = total < p->o.size ? OPEN_REPLACE : OPEN_GROW;
  return total < p->o.size || (p->nwaiting > p->nconnecting && total < p->o.max_size);
}

/* While down: the next attempt, one at a time, reconnect_interval after the last. */
static void arm_retry(mk_pool *p) {
  int why;
  if (p->closed || !p->started || p->nconnecting > 0 || p->reconnect_armed || !needs_conn(p, &why)) return;
  p->reconnect_armed = 1;
  if (mk_timer_start(p->reconnect_timer, (uint64_t)p->o.reconnect_interval_ms) < 0) {
    /* not armed: the next keep_size or grow tries again; meanwhile waiters that no
     * connection can serve fail (check_available) rather than wait for nothing */
    p->reconnect_armed = 0;
    snprintf(p->last_error, sizeof p->last_error, "cannot start the reconnect timer");
  }
}

static void on_reconnect_timer(void *ud) {
  mk_pool *p = ud;
  int why;
  enter(p);
  p->reconnect_armed = 0;
  if (!p->closed && p->nconnecting == 0 && needs_conn(p, &why)) open_conn(p, why);
  leave(p);
}

/* Keeps `size` connections open or opening. While the server is down, one attempt
 * every reconnect_interval; otherwise all missing ones at once. */
static void keep_size(mk_pool *p) {
  if (p->closed || !p->started) return;
  if (p->down) {
    arm_retry(p);
    return;
  }
  while (p->nalive + p->nconnecting < p->o.size) {
    int before = p->nconnecting + p->nalive;
    open_conn(p, OPEN_REPLACE);
    if (p->nconnecting + p->nalive == before || p->down) break; /* failed at once */
  }
}

/* While no connection is open or opening and the last attempt failed, nothing can serve
 * a waiter before the next attempt (reconnect_interval away): they fail now, as new
 * requests are refused (admit). */
static void check_available(mk_pool *p) {
  char msg[320];
  if (p->closed || !p->down || p->nalive > 0 || p->nconnecting > 0 || !p->wait_head) return;
  snprintf(msg, sizeof msg, "no connection to the database could be opened: %s", p->last_error);
  fail_waiters(p, MK_ERR_NOT_AVAILABLE, msg);
}

/* Opens connections for waiters no connection serves, never past max_size. Below size
 * (the pool reopens after an outage, waiters already queued) a connection replaces a
 * dead one, and counts as a reconnect; past size it is growth. */
static void grow(mk_pool *p) {
  if (p->down) { /* the last attempt failed (too many clients?): retry later */
    arm_retry(p);
    return;
  }
  while (!p->closed && p->nwaiting > p->nconnecting &&
         p->nalive + p->nconnecting < p->o.max_size) {
    int before = p->nconnecting + p->nalive;
    open_conn(p, before < p->o.size ? OPEN_REPLACE : OPEN_GROW);
    if (p->nconnecting + p->nalive == before) break;
  }
}

/* Requests on connections */

static void pool_req_done(mk_req *r, void *ud);

/* 1 if r may share a connection with other requests of the pool (pipeline). A
 * transaction() runs alone: nothing is stacked onto it, and it is never stacked onto a
 * busy connection. So does a plain request that opens a transaction (BEGIN or START
 * first): requests stacked behind it would run inside that transaction, and be rolled
 * back with it when the connection comes back. */
static int may_share(const mk_req *r) {
  const char *sql;
  if (mk_req_flags(r) & MK_REQ_ALONE) return 0;
  sql = mk_req_sql(r, 0);
  return !sql || !(mk_sql_starts_with_keyword(sql, "begin") || mk_sql_starts_with_keyword(sql, "start"));
}

/* Sends w's request on pc (free, or busy with others it may join). Returns 0, or -1 if
 * pc turned out to be closed. */
static int run_on(mk_wait *w, mk_pconn *pc) {
  pc->state = PC_BUSY;
  req_link(pc, w);
  if (w->pool->o.pipeline && !may_share(w->r)) pc->alone = 1;
  mk_req_set_done(w->r, pool_req_done, w);
  if (mk_conn_submit(pc->c, w->r) < 0) {
    req_unlink(pc, w);
    return -1;
  }
  return 0;
}

static int may_replay(const mk_pool *p, const mk_wait *w) {
  mk_req *r = w->r;
  const mk_error *e = mk_req_error(r);
  if (p->closed || w->retried || p->o.retry == MK_RETRY_NEVER || mk_req_txn_started(r)) return 0;
  /* a request that timed out or was cancelled ended as asked, whatever became of its
   * connection: it is never replayed */
  if (e && (e->kind == MK_ERR_TIMEOUT || e->kind == MK_ERR_QUERY_CANCELED)) return 0;
  /* a stream or COPY once sent is never replayed, even when the server ended the
   * session before any result (57P01): it may have handed rows out or taken its
   * source's data, which cannot be read again */
  if ((mk_req_flags(r) & (MK_REQ_STREAM | MK_REQ_COPY_IN | MK_REQ_COPY_OUT)) && mk_req_sent(r)) return 0;
  return p->o.retry == MK_RETRY_ALWAYS || !mk_req_may_have_run(r);
}

/* A request of the pool ended. When its connection died, the other requests on it end
 * right after this (the connection fails each of them in turn, with w->pc already
 * cleared by discard), and each is replayed or fails on its own may_have_run. */
static void pool_req_done(mk_req *r, void *ud) {
  mk_wait *w = ud;
  mk_pool *p = w->pool;
  mk_pconn *pc = w->pc; /* NULL if the pool already discarded the connection */
  int died = !pc || mk_conn_state_of(pc->c) == MK_CONN_CLOSED;
  enter(p);
  if (pc) req_unlink(pc, w);
  if (died) {
    int replay = mk_req_error(r) && may_replay(p, w), lost = pc != NULL;
    if (pc) discard(p, pc);
    if (replay) {
      mk_error why = {MK_ERR_NONE, NULL, NULL};
      if (p->hooks.event) mk_error_move(&why, mk_req_error(r)); /* reset would free it */
      w->retried = 1;
      p->counters.retries++;
      mk_req_reset(r);
      requeue(p, w);
      keep_size(p);
      dispatch(p);
      if (lost) emit(p, MK_POOL_EV_LOST, -1, &why);
      emit(p, MK_POOL_EV_RETRY, -1, &why);
      mk_error_clear(&why);
      leave(p);
      return;
    }
    keep_size(p);
    if (lost) emit(p, MK_POOL_EV_LOST, -1, mk_req_error(r));
  } else if (pc->nreq == 0) {
    pc->checked = mk_clock_us(); /* the loop has just read its socket for r's end */
    give_back(p, pc);
  } else {
    dispatch(p); /* pc has room for one more (pipeline) */
  }
  finish(p, w, MK_ERR_NONE, NULL);
  leave(p);
}

/* getconn */

static void deliver(mk_pool *p, mk_wait *w, mk_pconn *pc) {
  mk_pool_got_fn got = w->got;
  void *ud = w->ud;
  wait_stop_timer(w);
  free(w);
  pc->w = NULL;
  got(p, pc, NULL, ud);
}

static void ping_done(mk_req *r, void *ud) {
  mk_wait *w = ud;
  mk_pool *p = w->pool;
  mk_pconn *pc = w->pc;
  int ok = pc && mk_req_error(r) == NULL && mk_conn_state_of(pc->c) == MK_CONN_READY;
  /* the ping found the connection dead: its death is reported here, since the pool had
   * taken it off its lists before the connection said so */
  int lost = pc && !ok && mk_conn_state_of(pc->c) == MK_CONN_CLOSED;
  mk_error why;
  memset(&why, 0, sizeof why);
  if (lost && mk_req_error(r)) mk_error_set(&why, mk_req_error(r)->kind, mk_error_message(mk_req_error(r)));
  enter(p);
  mk_req_free(r);
  w->ping_req = NULL;
  w->pc = NULL;
  if (ok) {
    deliver(p, w, pc);
  } else {
    if (pc) discard(p, pc); /* a dead connection is never handed out: wait for another */
    if (p->closed) {
      finish(p, w, MK_ERR_POOL, "pool is closed");
    } else {
      requeue(p, w);
      keep_size(p);
      dispatch(p);
    }
    if (lost) emit(p, MK_POOL_EV_LOST, -1, why.kind != MK_ERR_NONE ? &why : NULL);
  }
  mk_error_clear(&why);
  leave(p);
}

/* Hands pc to the getconn waiter w, pinging it first when asked and it was idle for
 * a second or more. */
static void reserve(mk_pool *p, mk_wait *w, mk_pconn *pc) {
  pc->state = PC_RESERVED;
  if (w->ping && mk_loop_now(p->loop) - pc->last_used >= 1000) {
    mk_req *r = mk_req_new(1, 0, 0, ping_done, w);
    if (r && mk_req_stmt(r, 0, "SELECT 1", 8, -1) == 0) {
      pc->w = w;
      w->pc = pc;
      w->ping_req = r;
      if (mk_conn_submit(pc->c, r) == 0) return;
      w->ping_req = NULL;
      w->pc = NULL;
      pc->w = NULL;
    }
    mk_req_free(r);
    discard(p, pc);
    requeue(p, w);
    keep_size(p);
    return;
  }
  deliver(p, w, pc);
}

/* How long a free connection's socket may go unlooked-at before it is probed. */
#define PROBE_AFTER_US 1000

/* 1 if the free connection pc is known to be dead. The loop notices a killed backend
 * or a stopped server on an idle connection only when it polls; a request handed out
 * before that (after a callback that blocked, in the same loop turn as the kill) would
 * meet the dead socket. So the socket is looked at unless the pool knew it clean less
 * than PROBE_AFTER_US ago (the loop read it for the end of the connection's last
 * request, or a probe found nothing): an idle connection's socket has nothing to read,
 * so anything readable is read now: libpq reads it (PQconsumeInput does not parse, so
 * no callback runs) and reports end-of-file or a reset as CONNECTION_BAD. A death
 * within that millisecond is no better known than one just after a probe: the request
 * meets a broken connection and is replayed as may_replay says. Without the window,
 * every pooled request would cost a poll() syscall. */
static int free_conn_dead(mk_pconn *pc) {
  PGconn *pg = mk_conn_pg(pc->c);
  struct pollfd pfd;
  uint64_t now;
  int i;
  if (!pg || mk_conn_state_of(pc->c) != MK_CONN_READY || PQstatus(pg) == CONNECTION_BAD) return 1;
  now = mk_clock_us();
  if (now && pc->checked && now - pc->checked < PROBE_AFTER_US) return 0;
  pfd.fd = PQsocket(pg);
  pfd.events = POLLIN;
  if (pfd.fd < 0) return 1;
  for (i = 0; i < 4; i++) { /* the FATAL message, then end-of-file */
    pfd.revents = 0;
    int n = poll(&pfd, 1, 0);
    if (n <= 0) {
      if (n == 0 && i == 0) pc->checked = now; /* nothing at all to read: clean */
      return 0;
    }
    if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) return 1;
    if (!PQconsumeInput(pg)) return 1;
  }
  return PQstatus(pg) == CONNECTION_BAD;
}

/* Connections the first waiters wait for: those being opened and, while the server
 * takes new ones, those the pool may still open (up to max_size). */
static int growth_room(const mk_pool *p) {
  int room = p->nconnecting, total = p->nalive + p->nconnecting;
  if (!p->down && total < p->o.max_size) room += p->o.max_size - total;
  return room;
}

/* With pipeline: the waiter to put on a busy connection now, or NULL. The first
 * growth_room waiters wait for new connections (a connection of its own serves a
 * request better than a deeper pipeline); the one after them is stacked if it may
 * share. If it may not (a transaction, a getconn), nothing overtakes it: stacking
 * pauses until a connection is free for it, so that it cannot starve behind pipelines
 * that never drain. */
static mk_wait *next_to_stack(const mk_pool *p) {
  int skip = growth_room(p);
  mk_wait *w = p->wait_head;
  while (w && skip-- > 0) w = w->next;
  return w && w->r && may_share(w->r) ? w : NULL;
}

/* The connection a request joins: busy with requests that share, fewer than
 * pipeline_depth of them, open and ready, not past max_lifetime (it must drain to be
 * replaced); the least loaded one, or NULL. */
static mk_pconn *stack_target(const mk_pool *p) {
  mk_pconn *pc, *best = NULL;
  for (pc = p->conns; pc; pc = pc->next) {
    PGconn *pg;
    if (pc->state != PC_BUSY || pc->alone || pc->nreq >= p->o.pipeline_depth) continue;
    if (best && pc->nreq >= best->nreq) continue;
    pg = mk_conn_pg(pc->c);
    if (!pg || mk_conn_state_of(pc->c) != MK_CONN_READY || PQstatus(pg) == CONNECTION_BAD || expired(p, pc))
      continue;
    best = pc;
    if (best->nreq == 1) break; /* no busy connection carries fewer */
  }
  return best;
}

/* 1 if the request r, submitted now, would join a busy connection rather than wait
 * (after a dispatch, the waiters past growth_room are ones that cannot be stacked). */
static int would_stack(const mk_pool *p, const mk_req *r) {
  return p->o.pipeline && p->nwaiting == growth_room(p) && may_share(r) && stack_target(p);
}

/* Gives the waiter w the connection pc: a free one, or with pipeline a busy one. */
static void hand(mk_pool *p, mk_wait *w, mk_pconn *pc) {
  wait_unlink(p, w);
  wait_pause(p, w); /* closed once w ends or has its connection for good */
  p->counters.acquired++;
  if (w->r) {
    if (run_on(w, pc) >= 0) return;
    if (pc->nreq > 0 && mk_conn_state_of(pc->c) == MK_CONN_READY) {
      /* the connection is fine (no memory for the request's timer): the requests on it
       * go on, this one fails */
      finish(p, w, MK_ERR_INTERFACE, "out of memory");
      return;
    }
    discard(p, pc);
    requeue(p, w);
    keep_size(p);
  } else {
    reserve(p, w, pc);
  }
}

/* Hands free connections to waiters, oldest waiter first; with pipeline, then stacks
 * waiters onto busy connections (next_to_stack, stack_target); then grows for the
 * rest. */
static void dispatch(mk_pool *p) {
  if (p->later_unarmed && mk_timer_start(p->later_timer, 0) == 0) p->later_unarmed = 0;
  while (!p->closed && p->wait_head) {
    mk_wait *w = p->wait_head;
    mk_pconn *pc = p->free_head;
    if (pc) {
      if (free_conn_dead(pc)) { /* never handed out: replaced like any lost free one */
        discard(p, pc);
        keep_size(p);
        emit(p, MK_POOL_EV_LOST, -1, NULL); /* the probe, not the connection, found it dead */
        continue;
      }
      free_unlink(p, pc);
    } else if (!p->o.pipeline || !(w = next_to_stack(p)) || !(pc = stack_target(p))) {
      break;
    }
    hand(p, w, pc);
  }
  grow(p);
  check_available(p);
}

static void rollback_done(mk_req *r, void *ud) {
  mk_pconn *pc = ud; /* discard() redirects this callback: pc is still in the pool */
  mk_pool *p = pc->pool;
  int ok = mk_req_error(r) == NULL && mk_conn_state_of(pc->c) == MK_CONN_READY;
  enter(p);
  mk_req_free(r);
  pc->rollback = NULL;
  if (ok) {
    pc->checked = mk_clock_us(); /* the loop has just read the end of the ROLLBACK */
    became_free(p, pc);
  } else {
    discard(p, pc);
    keep_size(p);
  }
  leave(p);
}

/* A connection comes back (after a request or putconn): free, after a ROLLBACK if a
 * transaction is open, or discarded if dead or still running something. */
static void give_back(mk_pool *p, mk_pconn *pc) {
  PGconn *pg = mk_conn_pg(pc->c);
  PGTransactionStatusType ts = pg ? PQtransactionStatus(pg) : PQTRANS_UNKNOWN;
  if (p->closed) {
    discard(p, pc);
    return;
  }
  if (mk_conn_state_of(pc->c) != MK_CONN_READY || mk_conn_busy(pc->c) || ts == PQTRANS_UNKNOWN ||
      ts == PQTRANS_ACTIVE) {
    discard(p, pc);
    keep_size(p);
    return;
  }
  if (ts == PQTRANS_IDLE) {
    became_free(p, pc);
    return;
  }
  {
    mk_req *r = mk_req_new(1, 0, 0, rollback_done, pc);
    pc->state = PC_RETURNING;
    if (!r || mk_req_stmt(r, 0, "ROLLBACK", 8, -1) < 0 || mk_conn_submit(pc->c, r) < 0) {
      mk_req_free(r);
      discard(p, pc);
      keep_size(p);
      return;
    }
    pc->rollback = r;
  }
}

/* The shrink timer: closes free connections idle for shrink_delay, least recently used
 * first, never below size. */
static void on_later_timer(void *ud);

static void on_shrink_timer(void *ud) {
  mk_pool *p = ud;
  uint64_t now;
  int shrunk = 0;
  enter(p);
  now = mk_loop_now(p->loop);
  while (!p->closed && p->nalive > p->o.size && p->free_tail &&
         now - p->free_tail->last_used >= (uint64_t)p->o.shrink_delay_ms) {
    discard(p, p->free_tail);
    shrunk++;
  }
  while (shrunk-- > 0) emit(p, MK_POOL_EV_SHRINK, -1, NULL);
  /* not armed again (it cannot fail on Linux): shrinking stops, nothing waits for it */
  if (!p->closed) (void)mk_timer_start(p->shrink_timer, (uint64_t)p->o.shrink_period_ms);
  leave(p);
}

static void on_later_timer(void *ud) {
  mk_pool *p = ud;
  mk_pconn *pc;
  enter(p);
  for (;;) { /* give_back runs callbacks: look again from the head each time */
    for (pc = p->conns; pc && !pc->give_back_later; pc = pc->next) {}
    if (!pc) break;
    pc->give_back_later = 0;
    if (pc->state == PC_RESERVED && !pc->w)
      give_back(p, pc);
    else if (pc->state == PC_SETUP) /* its factory's coroutine was collected unfinished */
      setup_end(p, pc, 0, "connection setup (connection_factory) never finished");
  }
  leave(p);
}

void mk_pool_putconn_later(mk_pool *p, mk_pconn *pc) {
  pc->give_back_later = 1;
  /* if the timer cannot start, the next dispatch (any request or getconn) starts it */
  if (mk_timer_start(p->later_timer, 0) < 0) p->later_unarmed = 1;
}

/* API */

mk_pool *mk_pool_new(mk_loop *loop, const mk_pool_opts *opts, const mk_pool_hooks *hooks, void *ud) {
  mk_pool *p = calloc(1, sizeof *p);
  int i;
  if (!p) return NULL;
  p->loop = loop;
  p->o = *opts;
  if (hooks) p->hooks = *hooks;
  p->ud = ud;
  p->conninfo = strdup(opts->conninfo);
  p->setsession = calloc((size_t)(opts->nsetsession > 0 ? opts->nsetsession : 1), sizeof(char *));
  p->reconnect_timer = mk_timer_new(loop, on_reconnect_timer, p);
  p->shrink_timer = mk_timer_new(loop, on_shrink_timer, p);
  p->later_timer = mk_timer_new(loop, on_later_timer, p);
  p->lifetime_timer = mk_timer_new(loop, on_lifetime_timer, p);
  if (!p->conninfo || !p->setsession || !p->reconnect_timer || !p->shrink_timer || !p->later_timer ||
      !p->lifetime_timer)
    goto fail;
  /* maintenance does not keep momoko.run() going */
  mk_timer_keepalive(p->reconnect_timer, 0);
  mk_timer_keepalive(p->shrink_timer, 0);
  mk_timer_keepalive(p->lifetime_timer, 0);
  p->rng = ((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15u) ^ mk_loop_now(loop) ^ 0x2545f4914f6cdd1du;
  if (!p->rng) p->rng = 1;
  for (i = 0; i < opts->nsetsession; i++)
    if (!(p->setsession[i] = strdup(opts->setsession[i]))) goto fail;
  p->o.conninfo = NULL;
  p->o.setsession = NULL;
  return p;
fail:
  p->released = 1;
  free_pool(p);
  return NULL;
}

static void free_pool(mk_pool *p) {
  int i;
  mk_timer_close(p->reconnect_timer);
  mk_timer_close(p->shrink_timer);
  mk_timer_close(p->later_timer);
  mk_timer_close(p->lifetime_timer);
  free_gone(p);
  for (i = 0; p->setsession && i < p->o.nsetsession; i++) free(p->setsession[i]);
  free(p->setsession);
  free(p->conninfo);
  free(p);
}

int mk_pool_connect(mk_pool *p) {
  int i;
  if (p->started || p->closed) return -1;
  enter(p);
  p->started = 1;
  p->initial_left = p->o.size;
  for (i = 0; i < p->o.size && !p->closed; i++) open_conn(p, OPEN_INITIAL);
  /* (cannot fail on Linux; if it did, the pool only never shrinks) */
  if (p->o.auto_shrink && !p->closed) (void)mk_timer_start(p->shrink_timer, (uint64_t)p->o.shrink_period_ms);
  leave(p);
  return 0;
}

/* Common admission of a request r (NULL: a getconn waiter). Returns 0 or a refusal
 * kind. */
static int admit(mk_pool *p, const mk_req *r, const char **why) {
  if (p->closed) {
    *why = "pool is closed";
    return MK_ERR_POOL;
  }
  if (!p->started) {
    *why = "pool is not connected (call pool:connect() first)";
    return MK_ERR_POOL;
  }
  if (p->down && p->nalive == 0 && p->nconnecting == 0) {
    snprintf(p->unavailable, sizeof p->unavailable, "no connection to the database could be opened: %s",
             p->last_error);
    *why = p->unavailable;
    return MK_ERR_NOT_AVAILABLE;
  }
  if (!p->free_head && p->o.max_waiting >= 0 && p->nwaiting >= p->o.max_waiting && !(r && would_stack(p, r))) {
    *why = "too many requests waiting for a connection (max_waiting)";
    return MK_ERR_POOL;
  }
  return 0;
}

static mk_wait *new_wait(mk_pool *p) {
  mk_wait *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->pool = p;
  if (p->o.acquire_timeout_ms > 0) {
    w->timer = mk_timer_new(p->loop, on_acquire_timeout, w);
    if (!w->timer || wait_arm(p, w) < 0) {
      mk_timer_close(w->timer);
      free(w);
      return NULL;
    }
  }
  return w;
}

int mk_pool_submit(mk_pool *p, mk_req *r, const char **why) {
  mk_wait *w;
  int kind = admit(p, r, why);
  if (kind) return kind;
  if (!(w = new_wait(p))) {
    *why = "out of memory";
    return MK_ERR_INTERFACE;
  }
  w->r = r;
  mk_req_get_done(r, &w->done, &w->ud); /* restored by finish() */
  mk_req_set_done(r, pool_req_done, w);
  enter(p);
  wait_push(p, w, 0);
  dispatch(p);
  leave(p);
  return 0;
}

int mk_pool_cancel(mk_req *r) {
  mk_wait *w = mk_req_ud(r);
  mk_pool *p = w->pool;
  int done = 0;
  enter(p);
  if (w->queued) {
    finish(p, w, MK_ERR_QUERY_CANCELED, "canceling statement due to user request (it was not sent yet)");
    done = 1;
  } else if (w->pc) {
    done = mk_conn_cancel(w->pc->c, r);
  }
  leave(p);
  return done;
}

int mk_pool_getconn(mk_pool *p, int ping, mk_pool_got_fn got, void *ud, const char **why) {
  mk_wait *w;
  int kind = admit(p, NULL, why);
  if (kind) return kind;
  if (!(w = new_wait(p))) {
    *why = "out of memory";
    return MK_ERR_INTERFACE;
  }
  w->got = got;
  w->ud = ud;
  w->ping = ping;
  enter(p);
  wait_push(p, w, 0);
  dispatch(p);
  leave(p);
  return 0;
}

int mk_pool_putconn(mk_pool *p, mk_pconn *pc) {
  if (pc->pool != p || pc->state != PC_RESERVED || pc->w) return -1;
  enter(p);
  give_back(p, pc); /* closed pool: discards it */
  leave(p);
  return 0;
}

mk_conn *mk_pconn_conn(const mk_pconn *pc) { return pc->c; }

mk_pool *mk_pconn_pool(const mk_pconn *pc) { return pc->pool; }

int mk_pconn_reserved(const mk_pconn *pc) { return pc->state == PC_RESERVED || pc->state == PC_SETUP; }

int mk_pconn_returnable(const mk_pconn *pc) { return pc->state == PC_RESERVED && !pc->w; }

/* 1 while pc is in its holder's hands: reserved (not pinging), or in setup. */
static int held(const mk_pconn *pc) {
  return (pc->state == PC_RESERVED && !pc->w) || pc->state == PC_SETUP;
}

/* The next connection close() has to deal with: held ones already closed stay with
 * their holders until putconn or mk_pool_setup_done. */
static mk_pconn *next_to_close(mk_pool *p) {
  mk_pconn *pc;
  for (pc = p->conns; pc; pc = pc->next)
    if (!(held(pc) && mk_conn_state_of(pc->c) == MK_CONN_CLOSED)) return pc;
  return NULL;
}

void mk_pool_close(mk_pool *p) {
  mk_pconn *pc;
  if (p->closed) return;
  enter(p);
  p->closed = 1;
  mk_timer_stop(p->reconnect_timer);
  mk_timer_stop(p->shrink_timer);
  mk_timer_stop(p->lifetime_timer);
  p->lifetime_due = 0;
  if (p->initial_left > 0) {
    p->initial_left = 0;
    if (p->hooks.connected) {
      mk_error e;
      mk_error_set(&e, MK_ERR_POOL, "pool is closed");
      p->hooks.connected(p, &e, p->ud);
      mk_error_clear(&e);
    }
  }
  fail_waiters(p, MK_ERR_POOL, "pool is closed");
  /* Running requests complete with InterfaceError("connection closed") as their
   * connection closes. Reserved connections are closed for their holders, who still
   * give them back (putconn frees them). Callbacks run in between: start over from the
   * list's head each time. */
  while ((pc = next_to_close(p))) {
    if (held(pc))
      mk_conn_close(pc->c);
    else
      discard(p, pc);
  }
  leave(p);
}

void mk_pool_release(mk_pool *p) {
  enter(p);
  mk_pool_close(p);
  memset(&p->hooks, 0, sizeof p->hooks);
  while (p->conns) discard(p, p->conns);
  p->released = 1;
  leave(p);
}

int mk_pool_closed(const mk_pool *p) { return p->closed; }

void mk_pool_stats_of(const mk_pool *p, mk_pool_stats *s) {
  const mk_pconn *pc;
  *s = p->counters;
  s->size = p->nalive;
  s->connecting = p->nconnecting;
  s->waiting = p->nwaiting;
  s->free = s->busy = 0;
  for (pc = p->conns; pc; pc = pc->next) {
    if (pc->state == PC_FREE) s->free++;
    else if (alive(pc)) s->busy++;
  }
  s->dead = p->started && !p->closed && p->nalive + p->nconnecting < p->o.size
              ? p->o.size - p->nalive - p->nconnecting : 0;
}

/* mk_conn: the connection state machine over libpq's non-blocking API (see mk_conn.h).
 *
 * Every entry from libuv or from the owner runs between enter() and leave(). Callbacks
 * into the owner may close or release the connection; code after a callback re-reads
 * c->state, and PQfinish and free(c) wait until the outermost leave(). */
#include "mk_conn.h"

#include "mk_cancel.h"

#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mk_conn {
  mk_loop *loop;
  PGconn *pg;
  mk_conn_state state;
  int handshake_done; /* libpq connected; setsession may still run */
  mk_io *io;
  mk_timer *timer; /* connect timeout */
  mk_req *head, *tail;
  mk_req *inflight; /* the request being run (the head), or NULL */
  int depth;        /* nesting of enter() */
  struct pending_cancel *cancels; /* cancel requests still on their way to the server */
  mk_timer *recheck; /* looks again for delivered cancels while requests wait */
  int broken;       /* the socket reported an error: read what is left, send nothing */
  int released;
  mk_conn_hooks hooks;
  void *ud;
  uint64_t last_used;
  mk_req *setsession; /* waits here between mk_conn_connect and the handshake's end */
};

#define ROLLBACK_STEP(r) MK_REQ_ROLLBACK_STEP(r)
#define COMMIT_STEP(r) MK_REQ_COMMIT_STEP(r)

static void lost(mk_conn *c);
static void advance(mk_conn *c);
static int cancels_pending(mk_conn *c);
static void drop_cancels(mk_conn *c, int all);
static void recheck_soon(mk_conn *c);
static void on_io(void *ud, int events, int status);
static void send_step(mk_conn *c, mk_req *r);

/* Connection bookkeeping */

static int can_send(const mk_conn *c);

static void enter(mk_conn *c) { c->depth++; }

/* Requests submitted from inside a callback (depth > 0) wait here, at the outermost
 * leave(): sending from within libpq's or a completion's call chain is not safe. */
static void leave(mk_conn *c) {
  while (c->depth == 1 && !c->released && !c->broken && can_send(c) && !c->inflight && c->head) {
    if (cancels_pending(c)) {
      recheck_soon(c);
      break;
    }
    advance(c);
  }
  if (--c->depth > 0) return;
  /* an idle connection is watched (to notice its death) but is no work for the loop:
   * momoko.run() returns once nothing is connecting, queued or running */
  if (c->io) mk_io_keepalive(c->io, c->state == MK_CONN_CONNECTING || c->head != NULL);
  if (c->state == MK_CONN_CLOSED && c->pg) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
  if (c->released) {
    drop_cancels(c, 1);
    mk_timer_close(c->recheck);
    free(c);
  }
}

mk_conn *mk_conn_new(mk_loop *loop, const mk_conn_hooks *hooks, void *ud) {
  mk_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->loop = loop;
  c->state = MK_CONN_NEW;
  if (hooks) c->hooks = *hooks;
  c->ud = ud;
  return c;
}

mk_conn_state mk_conn_state_of(const mk_conn *c) { return c->state; }

int mk_conn_busy(const mk_conn *c) { return c->head != NULL; }

PGconn *mk_conn_pg(const mk_conn *c) { return c->state == MK_CONN_CLOSED ? NULL : c->pg; }

uint64_t mk_conn_last_used(const mk_conn *c) { return c->last_used; }

static void notify(mk_conn *c, const char *msg) {
  if (c->hooks.notice) c->hooks.notice(c, msg, c->ud);
}

static void on_pq_notice(void *arg, const PGresult *res) {
  mk_conn *c = arg;
  if (c->state != MK_CONN_CLOSED) notify(c, PQresultErrorMessage(res));
}

/* Takes r off the queue; 0 if it was not on it (already ended). */
static int unlink_req(mk_conn *c, mk_req *r) {
  mk_req **p = &c->head;
  mk_req *prev = NULL;
  while (*p && *p != r) {
    prev = *p;
    p = &(*p)->next;
  }
  if (!*p) return 0;
  *p = r->next;
  if (c->tail == r) c->tail = prev;
  if (c->inflight == r) c->inflight = NULL;
  r->next = NULL;
  r->conn = NULL;
  mk_timer_close(r->timer);
  r->timer = NULL;
  return 1;
}

/* Ends r: unlinks it, sends the next request first (so the server works while the owner
 * handles this result), then hands r back through its done callback. */
static void complete(mk_conn *c, mk_req *r) {
  if (!unlink_req(c, r)) return;
  c->last_used = mk_loop_now(c->loop);
  if (r->timed_out && r->err.kind == MK_ERR_QUERY_CANCELED) {
    char msg[96];
    snprintf(msg, sizeof msg, "query timed out after %d ms (canceled on the server)", r->timeout_ms);
    mk_error_clear(&r->err);
    mk_error_set(&r->err, MK_ERR_TIMEOUT, msg);
  }
  if (!r->internal) advance(c);
  r->done(r, r->ud);
}

/* Cancel requests in flight (mk_cancel.c). Until they are delivered nothing new is
 * sent: a cancel meant for a request that finished meanwhile would otherwise hit the
 * next one. The connection never waits for them otherwise: it may close and be freed
 * while a cancel is stuck, and only drops its reference then. */
struct pending_cancel {
  mk_cancel *k;
  struct pending_cancel *next;
};

static void drop_cancels(mk_conn *c, int all) {
  struct pending_cancel **pp = &c->cancels, *pc;
  while ((pc = *pp) != NULL) {
    if (all || mk_cancel_done(pc->k)) {
      *pp = pc->next;
      mk_cancel_release(pc->k);
      free(pc);
    } else {
      pp = &pc->next;
    }
  }
}

/* 1 while a cancel request is still on its way. */
static int cancels_pending(mk_conn *c) {
  drop_cancels(c, 0);
  return c->cancels != NULL;
}

static void on_recheck(void *ud) {
  mk_conn *c = ud;
  enter(c);
  advance(c);
  leave(c);
}

/* Requests wait for a cancel still on its way: look again in a moment. */
static void recheck_soon(mk_conn *c) {
  if (!c->recheck) c->recheck = mk_timer_new(c->loop, on_recheck, c);
  if (c->recheck) mk_timer_start(c->recheck, 1);
}

static int send_cancel(mk_conn *c) {
  struct pending_cancel *pc;
  mk_cancel *k = c->pg ? mk_cancel_start(c->pg) : NULL;
  if (!k) return -1;
  pc = malloc(sizeof *pc);
  if (!pc) {
    mk_cancel_release(k); /* the thread still sends it */
    return -1;
  }
  pc->k = k;
  pc->next = c->cancels;
  c->cancels = pc;
  return 0;
}

/* Closes the connection and ends every request with kind and a message (inflight_msg
 * for the running request, queued_msg for the others); errors a request already has
 * are kept. The connect, if still running, fails with connect_err (when given). */
static void shut(mk_conn *c, mk_kind kind, const char *inflight_msg, const char *queued_msg,
                 mk_error *connect_err) {
  mk_req *list, *r;
  int connecting = c->state == MK_CONN_CONNECTING; /* a NEW one has no connect to fail */
  c->state = MK_CONN_CLOSED;
  mk_io_close(c->io);
  c->io = NULL;
  mk_timer_close(c->timer);
  c->timer = NULL;
  mk_req_free(c->setsession);
  c->setsession = NULL;
  list = c->head;
  c->head = c->tail = NULL;
  /* Detach every request before the first callback: a callback may cancel or time
   * out a request further down the list, which must then find it off the queue. */
  for (r = list; r; r = r->next) {
    r->conn = NULL;
    mk_timer_close(r->timer);
    r->timer = NULL;
    if (r->err.kind == MK_ERR_NONE)
      mk_error_set(&r->err, kind, r == c->inflight ? inflight_msg : queued_msg);
  }
  c->inflight = NULL;
  while (list) {
    r = list;
    list = r->next;
    r->next = NULL;
    r->done(r, r->ud);
  }
  if (connecting && connect_err && c->hooks.connected) c->hooks.connected(c, connect_err, c->ud);
}

static void connect_fail(mk_conn *c, mk_error *err) {
  char queued[512];
  snprintf(queued, sizeof queued, "connection failed: %s", mk_error_message(err));
  shut(c, MK_ERR_OPERATIONAL, queued, queued, err);
  mk_error_clear(err);
}

static void connect_fail_msg(mk_conn *c, const char *msg) {
  mk_error e;
  mk_error_set(&e, MK_ERR_OPERATIONAL, msg);
  connect_fail(c, &e);
}

/* The connection died: the running request fails with libpq's message (it may have
 * run), queued ones with a message saying they were never sent. */
static void lost(mk_conn *c) {
  char msg[512], queued[600];
  size_t n;
  if (c->state == MK_CONN_CLOSED) return;
  snprintf(msg, sizeof msg, "%s", c->pg ? PQerrorMessage(c->pg) : "");
  n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  if (n == 0) snprintf(msg, sizeof msg, "connection to the server was lost");
  if (c->state == MK_CONN_CONNECTING) {
    connect_fail_msg(c, msg);
    return;
  }
  snprintf(queued, sizeof queued, "connection lost before the request was sent: %s", msg);
  shut(c, MK_ERR_OPERATIONAL, msg, queued, NULL);
  if (c->hooks.lost) c->hooks.lost(c, c->ud);
}

/* Watches the current socket for events. A new watcher every time: libpq may have
 * replaced the socket, even under the same descriptor number. */
static int rewatch(mk_conn *c, int events) {
  int fd = PQsocket(c->pg), err = 0;
  mk_io_close(c->io);
  c->io = NULL;
  if (fd < 0) return -1;
  c->io = mk_io_new(c->loop, fd, on_io, c, &err);
  if (!c->io || mk_io_watch(c->io, events) < 0) return -1;
  return 0;
}

static void flush(mk_conn *c) {
  int rc = PQflush(c->pg);
  if (rc < 0) {
    lost(c);
    return;
  }
  if (mk_io_watch(c->io, rc == 1 ? MK_READ | MK_WRITE : MK_READ) < 0) lost(c);
}

static int can_send(const mk_conn *c) {
  return c->state == MK_CONN_READY || (c->state == MK_CONN_CONNECTING && c->handshake_done);
}

/* Sends the SQL of r's current step. */
static void send_step(mk_conn *c, mk_req *r) {
  const mk_stmt *st = NULL;
  const char *sql;
  int ok;
  if (!(r->flags & MK_REQ_TXN))
    st = &r->stmts[0];
  else if (r->step >= 1 && r->step <= r->nstmts)
    st = &r->stmts[r->step - 1];
  sql = st ? st->sql : r->step == 0 ? "BEGIN" : r->step == COMMIT_STEP(r) ? "COMMIT" : "ROLLBACK";
  if (st && st->nparams >= 0)
    ok = PQsendQueryParams(c->pg, sql, st->nparams, st->types, (const char *const *)st->values,
                           st->lengths, st->formats, 0);
  else
    ok = PQsendQuery(c->pg, sql);
  if (!ok) {
    if (PQstatus(c->pg) == CONNECTION_BAD) {
      lost(c);
    } else {
      if (r->err.kind == MK_ERR_NONE) /* a failed ROLLBACK keeps the statement's error */
        mk_error_set(&r->err, MK_ERR_INTERFACE, PQerrorMessage(c->pg));
      complete(c, r);
    }
    return;
  }
  r->may_have_run = 1;
  if ((r->flags & MK_REQ_TXN) && r->step == 0) r->txn_started = 1;
  flush(c);
}

static void advance(mk_conn *c) {
  mk_req *r;
  if (!can_send(c) || c->broken || c->inflight || !c->head) return;
  if (cancels_pending(c)) {
    recheck_soon(c);
    return;
  }
  r = c->head;
  c->inflight = r;
  r->step = (r->flags & MK_REQ_TXN) ? 0 : 1;
  send_step(c, r);
}

/* Files one PGresult of r's current step. */
static void take_result(mk_conn *c, mk_req *r, PGresult *res) {
  int user_step = !(r->flags & MK_REQ_TXN) || (r->step >= 1 && r->step <= r->nstmts);
  switch (PQresultStatus(res)) {
  case PGRES_FATAL_ERROR:
    if (r->err.kind == MK_ERR_NONE) {
      const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      /* The server ended the session (57P01 admin shutdown, 57P02 crash shutdown,
       * 57P03 cannot connect now) and answered this request with it, before any
       * result: the request was rolled back, so it cannot have taken effect. */
      if (state && strncmp(state, "57P0", 4) == 0 && state[4] >= '1' && state[4] <= '3' &&
          !(r->flags & MK_REQ_TXN) && !r->results[0])
        r->may_have_run = 0;
      mk_error_take_result(&r->err, res, PQstatus(c->pg) == CONNECTION_BAD);
      return;
    }
    if (r->step == ROLLBACK_STEP(r) && (r->flags & MK_REQ_TXN)) {
      char msg[600];
      snprintf(msg, sizeof msg, "ROLLBACK after a failed transaction failed: %s",
               PQresultErrorMessage(res));
      notify(c, msg);
    }
    PQclear(res);
    return;
  case PGRES_COPY_IN:
    PQclear(res);
    /* the server answers the CopyFail with 57014; the kind that says why is this one */
    if (r->err.kind == MK_ERR_NONE)
      mk_error_set(&r->err, MK_ERR_NOT_SUPPORTED, "COPY FROM STDIN is not supported by momoko");
    if (PQputCopyEnd(c->pg, "COPY FROM STDIN is not supported by momoko") < 0)
      lost(c);
    else
      flush(c);
    return;
  case PGRES_COPY_OUT:
  case PGRES_COPY_BOTH:
    PQclear(res);
    r->copy_out = 1;
    if (r->err.kind == MK_ERR_NONE)
      mk_error_set(&r->err, MK_ERR_NOT_SUPPORTED, "COPY TO STDOUT is not supported by momoko");
    return;
  default:
    if (r->err.kind != MK_ERR_NONE || !user_step) {
      PQclear(res);
      return;
    }
    {
      int i = (r->flags & MK_REQ_TXN) ? r->step - 1 : 0;
      PQclear(r->results[i]); /* several statements in one string: keep the last */
      r->results[i] = res;
    }
  }
}

/* The current step of r has all its results. */
static void step_done(mk_conn *c, mk_req *r) {
  int txn = (r->flags & MK_REQ_TXN) != 0;
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    lost(c);
    return;
  }
  if (r->err.kind != MK_ERR_NONE) {
    if (txn && (r->flags & MK_REQ_ROLLBACK) && r->step >= 1 && r->step <= r->nstmts) {
      r->step = ROLLBACK_STEP(r);
      send_step(c, r);
      return;
    }
  } else if (txn && r->step < COMMIT_STEP(r)) {
    r->step++;
    send_step(c, r);
    return;
  }
  complete(c, r);
}

/* Reads the rest of a COPY TO STDOUT nobody asked for. 0 means wait for more input. */
static int drain_copy(mk_conn *c, mk_req *r) {
  char *buf;
  int n;
  while ((n = PQgetCopyData(c->pg, &buf, 1)) > 0) PQfreemem(buf);
  if (!can_send(c) || c->inflight != r) return 0; /* a notice hook closed c */
  if (n == 0) return 0;
  r->copy_out = 0;
  return 1;
}

/* 1 if TLS data was decrypted by OpenSSL but not yet taken by libpq. libpq 15 checks
 * this only in its own blocking waits; over a non-blocking socket poll, such bytes (the
 * rest of a record that did not fit libpq's buffer) would wait for the next packet. */
static int tls_pending(mk_conn *c) {
  SSL *ssl = PQsslInUse(c->pg) ? PQsslStruct(c->pg, "OpenSSL") : NULL;
  return ssl && SSL_pending(ssl) > 0;
}

static void read_input(mk_conn *c) {
  PGnotify *note;
  if (!PQconsumeInput(c->pg)) {
    lost(c);
    return;
  }
  /* LISTEN/NOTIFY is not part of the API: free what arrives. */
  while ((note = PQnotifies(c->pg)) != NULL) PQfreemem(note);
  while (can_send(c) && c->inflight) {
    mk_req *r = c->inflight;
    PGresult *res;
    if (r->copy_out && !drain_copy(c, r)) return;
    /* libpq calls the notice hook while parsing here; it may have closed c (and ended
     * r): look again before touching r */
    if (PQisBusy(c->pg)) {
      if (!can_send(c) || c->inflight != r || !tls_pending(c)) return;
      /* bytes already inside OpenSSL: the socket will not say so, read them now */
      if (!PQconsumeInput(c->pg)) {
        lost(c);
        return;
      }
      continue;
    }
    if (!can_send(c) || c->inflight != r) break;
    res = PQgetResult(c->pg);
    if (!can_send(c) || c->inflight != r) {
      PQclear(res);
      break;
    }
    if (res)
      take_result(c, r, res);
    else
      step_done(c, r);
  }
  if (can_send(c) && PQstatus(c->pg) == CONNECTION_BAD) lost(c);
}

/* Connect */

static void became_ready(mk_conn *c) {
  mk_timer_close(c->timer);
  c->timer = NULL;
  c->state = MK_CONN_READY;
  c->last_used = mk_loop_now(c->loop);
  if (c->hooks.connected) c->hooks.connected(c, NULL, c->ud);
  advance(c);
}

static void setsession_done(mk_req *r, void *ud) {
  mk_conn *c = ud;
  if (r->err.kind != MK_ERR_NONE && c->state == MK_CONN_CONNECTING) {
    mk_error e;
    mk_error_move(&e, &r->err);
    mk_req_free(r);
    connect_fail(c, &e);
    return;
  }
  mk_req_free(r);
  if (c->state == MK_CONN_CONNECTING) became_ready(c);
}

/* libpq is connected: switch to non-blocking sends, then run setsession, if any, at the
 * head of the queue before anything the owner queued meanwhile. */
static void handshake_done(mk_conn *c) {
  mk_req *ss = c->setsession;
  c->setsession = NULL;
  if (PQsetnonblocking(c->pg, 1) != 0 || rewatch(c, MK_READ) < 0) {
    mk_req_free(ss);
    lost(c);
    return;
  }
  c->handshake_done = 1;
  if (!ss) {
    became_ready(c);
    return;
  }
  ss->conn = c;
  ss->next = c->head;
  c->head = ss;
  if (!c->tail) c->tail = ss;
  advance(c);
}

static void connect_step(mk_conn *c) {
  PostgresPollingStatusType st = PQconnectPoll(c->pg);
  if (c->state != MK_CONN_CONNECTING) return; /* a notice hook closed it */
  switch (st) {
  case PGRES_POLLING_OK:
    handshake_done(c);
    return;
  case PGRES_POLLING_READING:
  case PGRES_POLLING_WRITING:
    if (rewatch(c, st == PGRES_POLLING_READING ? MK_READ : MK_WRITE) < 0) lost(c);
    return;
  default:
    lost(c);
  }
}

static void on_io(void *ud, int events, int status) {
  mk_conn *c = ud;
  enter(c);
  if (c->state == MK_CONN_CONNECTING && !c->handshake_done) {
    connect_step(c);
  } else if (can_send(c)) {
    if (status < 0) {
      /* The socket reports an error (a reset after the server closed it). What the
       * server sent before is still readable: usually the FATAL that says why (57P01),
       * which tells whether the running request can have taken effect. Read it first;
       * nothing queued is sent meanwhile (it fails as never sent). */
      c->broken = 1;
      read_input(c);
      if (can_send(c)) lost(c);
    } else {
      if (events & MK_WRITE) flush(c);
      if ((events & MK_READ) && can_send(c)) read_input(c);
    }
  }
  leave(c);
}

static void on_connect_timeout(void *ud) {
  mk_conn *c = ud;
  enter(c);
  if (c->state == MK_CONN_CONNECTING) connect_fail_msg(c, "connection timeout expired");
  leave(c);
}

/* connect_timeout as libpq reads it (conninfo, else PGCONNECT_TIMEOUT): seconds, 0 for
 * none, and at least 2 as libpq enforces. */
static int connect_timeout_ms(PGconn *pg) {
  PQconninfoOption *opts = PQconninfo(pg), *o;
  int secs = 0;
  if (!opts) return 0;
  for (o = opts; o->keyword; o++)
    if (strcmp(o->keyword, "connect_timeout") == 0 && o->val) secs = atoi(o->val);
  PQconninfoFree(opts);
  if (secs <= 0) return 0;
  return (secs < 2 ? 2 : secs) * 1000;
}

static mk_req *setsession_req(mk_conn *c, const char *const *sql, int n) {
  mk_req *r;
  int i;
  if (n <= 0) return NULL;
  r = mk_req_new(n, MK_REQ_TXN | MK_REQ_ROLLBACK, 0, setsession_done, c);
  if (!r) return NULL;
  r->internal = 1;
  for (i = 0; i < n; i++) {
    if (mk_req_stmt(r, i, sql[i], strlen(sql[i]), -1) < 0) {
      mk_req_free(r);
      return NULL;
    }
  }
  return r;
}

int mk_conn_connect(mk_conn *c, const char *conninfo, const char *const *setsession,
                    int nsetsession) {
  int ms;
  if (c->state != MK_CONN_NEW) return -1;
  enter(c);
  c->state = MK_CONN_CONNECTING;
  c->pg = PQconnectStart(conninfo);
  if (!c->pg) {
    connect_fail_msg(c, "out of memory");
  } else if (nsetsession > 0 && !(c->setsession = setsession_req(c, setsession, nsetsession))) {
    connect_fail_msg(c, "out of memory");
  } else if (PQstatus(c->pg) == CONNECTION_BAD) {
    lost(c); /* a malformed conninfo: libpq's message says what */
  } else {
    PQsetNoticeReceiver(c->pg, on_pq_notice, c);
    ms = connect_timeout_ms(c->pg);
    if (ms > 0) {
      c->timer = mk_timer_new(c->loop, on_connect_timeout, c);
      if (!c->timer || mk_timer_start(c->timer, (uint64_t)ms) < 0) connect_fail_msg(c, "cannot start the connect timer");
    }
    /* libpq's first PQconnectPoll step waits for the socket to be writable */
    if (c->state == MK_CONN_CONNECTING && rewatch(c, MK_WRITE) < 0) lost(c);
  }
  leave(c);
  return 0;
}

/* Requests from the owner */

static void on_req_timeout(void *ud) {
  mk_req *r = ud;
  mk_conn *c = r->conn;
  char msg[160];
  if (!c) return;
  enter(c);
  if (c->inflight != r) {
    snprintf(msg, sizeof msg, "query timed out after %d ms while waiting for the connection", r->timeout_ms);
    mk_req_fail(r, MK_ERR_TIMEOUT, msg);
    complete(c, r);
  } else if (!r->timed_out) {
    /* ask the server to cancel; wait as long again (at least a second) for its answer */
    r->timed_out = 1;
    if (send_cancel(c) < 0 || mk_timer_start(r->timer, r->timeout_ms < 1000 ? 1000 : (uint64_t)r->timeout_ms) < 0) {
      snprintf(msg, sizeof msg, "query timed out after %d ms; cannot cancel it, connection closed", r->timeout_ms);
      mk_req_fail(r, MK_ERR_TIMEOUT, msg);
      lost(c);
    }
  } else {
    snprintf(msg, sizeof msg, "query timed out after %d ms; the server did not answer the cancel, connection closed", r->timeout_ms);
    mk_req_fail(r, MK_ERR_TIMEOUT, msg);
    lost(c);
  }
  leave(c);
}

int mk_conn_submit(mk_conn *c, mk_req *r) {
  if (c->state != MK_CONN_READY && c->state != MK_CONN_CONNECTING) return -1;
  if (r->timeout_ms > 0) {
    r->timer = mk_timer_new(c->loop, on_req_timeout, r);
    if (!r->timer || mk_timer_start(r->timer, (uint64_t)r->timeout_ms) < 0) {
      mk_timer_close(r->timer);
      r->timer = NULL;
      return -1;
    }
  }
  r->conn = c;
  r->next = NULL;
  if (c->tail)
    c->tail->next = r;
  else
    c->head = r;
  c->tail = r;
  if (c->depth == 0) {
    enter(c);
    advance(c);
    leave(c);
  }
  return 0;
}

int mk_conn_cancel(mk_conn *c, mk_req *r) {
  int done = 1;
  if (r->conn != c) return 0;
  enter(c);
  if (c->inflight == r) {
    done = send_cancel(c) == 0;
  } else {
    mk_req_fail(r, MK_ERR_QUERY_CANCELED, "canceling statement due to user request (it was not sent yet)");
    complete(c, r);
  }
  leave(c);
  return done;
}

void mk_conn_close(mk_conn *c) {
  if (c->state == MK_CONN_CLOSED) return;
  enter(c);
  if (c->inflight && c->pg) (void)send_cancel(c); /* do not leave the backend busy */
  {
    mk_error e;
    mk_error_set(&e, MK_ERR_INTERFACE, "connection closed");
    shut(c, MK_ERR_INTERFACE, "connection closed", "connection closed", &e);
    mk_error_clear(&e);
  }
  leave(c);
}

void mk_conn_release(mk_conn *c) {
  enter(c);
  memset(&c->hooks, 0, sizeof c->hooks);
  c->released = 1;
  mk_conn_close(c);
  leave(c);
}

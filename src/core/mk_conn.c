/* mk_conn: the connection state machine over libpq's non-blocking API (see mk_conn.h).
 *
 * Every entry from libuv or from the owner runs between enter() and leave(). Callbacks
 * into the owner may close or release the connection; code after a callback re-reads
 * c->state, and PQfinish and free(c) wait until the outermost leave().
 *
 * Notices: libpq copies the notice receiver and its argument into every PGresult, and
 * calls it for its own checks on the result (an out-of-range PQgetvalue or PQfname),
 * also after the connection was closed and freed. The argument is therefore a small
 * sink of its own (struct notice_sink), counted by libpq's event hooks: one reference
 * for the PGconn (dropped at PQfinish) and one per live result (dropped at PQclear). */
#include "mk_conn.h"

#include "mk_cancel.h"
#include "mk_dns.h"
#include "mk_hosts.h"
#include "mk_sql.h"
#include "mk_stmtcache.h"
#include "mk_text.h"

#include <libpq-events.h>
#include <limits.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a cancel request may take to reach the server when the conninfo sets no
 * connect_timeout. */
#define CANCEL_DEADLINE_MS 10000

/* PostgreSQL ignores a cancel request that reaches a backend between two commands (in
 * a pipeline: just as it goes from one request to the next). A request still running
 * after its cancel request was delivered gets another after RECANCEL_FIRST_MS, then
 * after twice as long each time, up to RECANCEL_MAX_MS. */
#define RECANCEL_FIRST_MS 50
#define RECANCEL_MAX_MS 2000

/* In pipeline mode DEALLOCATEs wait for an empty pipeline (only then does libpq tell the
 * transaction status). Once this many wait, nothing new is sent until the pipeline
 * drained and they went out: the server keeps at most the cache size and this many
 * prepared statements also under a load that never lets the pipeline drain. */
#define DEALLOC_HOLD 16

typedef struct notice_sink {
  int refs;    /* the PGconn, and each live result of it */
  mk_conn *c;  /* NULL once the PGconn is finished */
} notice_sink;


struct mk_conn {
  mk_loop *loop;
  PGconn *pg;
  mk_conn_state state;
  int handshake_done; /* libpq connected; setsession may still run */
  mk_io *io;
  mk_timer *timer; /* connect timeout */
  int connect_timeout_ms; /* the conninfo's connect_timeout (0: none), for each host */
  int host_index;         /* the host of the list libpq tries (mk_hosts.h), -1: not known */
  mk_req *head, *tail; /* every request: the sent ones first, oldest first */
  mk_req *unsent;   /* the first request not sent yet, or NULL */
  int nsent;        /* requests sent whose results have not all come */
  int nreqs;        /* requests on c, sent or not */
  int depth;        /* nesting of enter() */
  struct pending_cancel *cancels; /* cancel requests still on their way to the server */
  mk_timer *cancel_timer; /* the deadline of the oldest of them */
  mk_timer *recancel_timer; /* sends a cancel again that the server ignored */
  mk_req *recancel_for;     /* the running request it is for ... */
  unsigned recancel_ends;   /* ... while no request ended since (c->ends) */
  int recancel_ms;          /* the next wait: doubles up to RECANCEL_MAX_MS */
  unsigned ends;            /* requests taken off c so far */
  int cancel_deadline_ms;
  int copy_end_pending; /* PQputCopyEnd would block: retried when writable (1: with copy_end_msg) */
  char copy_end_msg[256]; /* the error message that ends a COPY FROM STDIN */
  mk_req *copy_in;  /* the COPY FROM STDIN request whose data is being sent */
  int paused;       /* a stream's consumer is behind: the socket is not read */
  int single_row_set; /* a stream asked libpq for single-row mode: libpq 15 keeps it on
                       * for the first query of a pipeline after that, so the next
                       * request goes out of pipeline mode, which resets it */
  mk_timer *resume_timer; /* reads what libpq holds already, after mk_conn_resume */
  int broken;       /* the socket reported an error: read what is left, send nothing */
  int released;
  mk_conn_hooks hooks;
  void *ud;
  uint64_t last_used;
  mk_req *setsession; /* waits here between mk_conn_connect and the handshake's end */
  notice_sink *sink;  /* the notice receiver's argument while pg lives */
  mk_dns *dns;        /* host names being resolved before libpq starts */
  int pipeline;       /* mk_conn_set_pipeline */
  int cache_size;     /* mk_conn_set_statement_cache */
  mk_stmtcache *cache; /* made at the end of the handshake when cache_size > 0 */
  unsigned long long stmt_base; /* random, made with the cache: statement id is named
                                 * mk_<stmt_base + id>, a name no other session uses */
  int session_reset_seen; /* a DEALLOCATE or DISCARD of the owner's ran on the session */
  unsigned *deallocs; /* cached statements to DEALLOCATE once out of a transaction */
  int ndeallocs, deallocs_cap;
  int dealloc_hold;  /* deallocs that hold new sends back: DEALLOC_HOLD, doubled by each
                      * drain that found a transaction block (they wait for its end) */
  int in_pipeline;    /* libpq is in pipeline mode */
  int barrier;        /* a pipelined transaction is out: nothing is sent behind it */
  int server_ended;   /* the server ended the session (57P01-57P03) */
  unsigned cancel_epoch; /* cancel requests started so far */
};

#define ROLLBACK_STEP(r) MK_REQ_ROLLBACK_STEP(r)
#define COMMIT_STEP(r) MK_REQ_COMMIT_STEP(r)

static void lost(mk_conn *c);
static void lost_with(mk_conn *c, const char *why);
static int advance(mk_conn *c);
static int cancels_pending(mk_conn *c);
static void drop_cancels(mk_conn *c, int all);
static void on_io(void *ud, int events, int status);
static void send_step(mk_conn *c, mk_req *r);

/* Connection bookkeeping */

static int can_send(const mk_conn *c);

static void enter(mk_conn *c) { c->depth++; }

static void finish_pg(mk_conn *c) {
  if (!c->pg) return;
  if (c->sink) c->sink->c = NULL; /* results that outlive c call a receiver that drops */
  c->sink = NULL;
  PQfinish(c->pg); /* its event: the sink loses the PGconn's reference */
  c->pg = NULL;
}

/* Requests submitted from inside a callback (depth > 0) wait here, at the outermost
 * leave(): sending from within libpq's or a completion's call chain is not safe. A
 * request that waits for a cancel request is sent by that cancel's end (on_cancel_end). */
static void leave(mk_conn *c) {
  while (c->depth == 1 && !c->released && !c->broken && can_send(c) && c->unsent && advance(c)) {}
  if (--c->depth > 0) return;
  /* an idle connection is watched (to notice its death) but is no work for the loop:
   * momoko.run() returns once nothing is connecting, queued or running */
  if (c->io) mk_io_keepalive(c->io, c->state == MK_CONN_CONNECTING || c->head != NULL);
  if (c->state == MK_CONN_CLOSED) finish_pg(c);
  if (c->released) {
    drop_cancels(c, 1);
    mk_timer_close(c->cancel_timer);
    mk_timer_close(c->resume_timer);
    mk_timer_close(c->recancel_timer);
    mk_dns_free(c->dns);
    mk_stmtcache_free(c->cache);
    free(c->deallocs);
    free(c);
  }
}

mk_conn *mk_conn_new(mk_loop *loop, const mk_conn_hooks *hooks, void *ud) {
  mk_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->loop = loop;
  c->state = MK_CONN_NEW;
  c->cancel_deadline_ms = CANCEL_DEADLINE_MS;
  c->dealloc_hold = DEALLOC_HOLD;
  if (hooks) c->hooks = *hooks;
  c->ud = ud;
  return c;
}

mk_conn_state mk_conn_state_of(const mk_conn *c) { return c->state; }

int mk_conn_busy(const mk_conn *c) { return c->head != NULL; }

PGconn *mk_conn_pg(const mk_conn *c) { return c->state == MK_CONN_CLOSED ? NULL : c->pg; }

uint64_t mk_conn_last_used(const mk_conn *c) { return c->last_used; }

void mk_conn_set_pipeline(mk_conn *c, int on) { c->pipeline = on != 0; }

void mk_conn_set_statement_cache(mk_conn *c, int size) { c->cache_size = size > 0 ? size : 0; }

int mk_conn_load(const mk_conn *c) { return c->nreqs; }

/* The oldest sent request, whose results come next, or NULL. */
static mk_req *running(const mk_conn *c) { return c->head && c->head->sent ? c->head : NULL; }

static void notify(mk_conn *c, const char *msg) {
  if (c->hooks.notice) c->hooks.notice(c, msg, c->ud);
}

static void on_pq_notice(void *arg, const PGresult *res) {
  notice_sink *s = arg;
  mk_conn *c = s->c;
  if (c && c->state != MK_CONN_CLOSED) notify(c, PQresultErrorMessage(res));
}

static void sink_unref(notice_sink *s) {
  if (--s->refs == 0) free(s);
}

/* libpq's events keep the count of the sink's holders. */
static int sink_event(PGEventId id, void *info, void *pass) {
  notice_sink *s = pass;
  (void)info;
  switch (id) {
  case PGEVT_RESULTCREATE:
  case PGEVT_RESULTCOPY:
    s->refs++;
    break;
  case PGEVT_RESULTDESTROY:
  case PGEVT_CONNDESTROY:
    sink_unref(s);
    break;
  default:
    break;
  }
  return 1;
}

/* Gives c->pg its notice receiver. -1 when memory ran out. */
static int attach_sink(mk_conn *c) {
  notice_sink *s = malloc(sizeof *s);
  if (!s) return -1;
  s->refs = 1;
  s->c = c;
  if (!PQregisterEventProc(c->pg, sink_event, "momoko notices", s)) {
    free(s);
    return -1;
  }
  c->sink = s;
  PQsetNoticeReceiver(c->pg, on_pq_notice, s);
  return 0;
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
  if (c->unsent == r) c->unsent = r->next;
  c->nreqs--;
  c->ends++;
  if (r->sent) {
    c->nsent--;
    c->copy_end_pending = 0;
    c->copy_in = NULL;
    c->paused = 0;
    if (r->pipelined && (r->flags & MK_REQ_TXN)) c->barrier = 0;
  }
  r->next = NULL;
  r->conn = NULL;
  mk_timer_close(r->timer);
  r->timer = NULL;
  return 1;
}

static int send_cancel(mk_conn *c);

/* Queues r (not on c) at the end. */
static void append_req(mk_conn *c, mk_req *r) {
  r->conn = c;
  r->next = NULL;
  if (c->tail)
    c->tail->next = r;
  else
    c->head = r;
  c->tail = r;
  if (!c->unsent) c->unsent = r;
  c->nreqs++;
}

/* Puts r (not on c) first among the requests not sent yet. */
static void requeue_front(mk_conn *c, mk_req *r) {
  mk_req **p = &c->head;
  while (*p && *p != c->unsent) p = &(*p)->next;
  r->conn = c;
  r->next = *p;
  *p = r;
  if (!r->next) c->tail = r;
  c->unsent = r;
  c->nreqs++;
}

/* The head is the running request now: a cancel asked for while requests sent before
 * it ran goes out now (a cancel request stops whatever the server runs). */
static void head_changed(mk_conn *c) {
  mk_req *h = running(c);
  if (!h || !h->cancel_wanted || h->cancel_sent || c->state == MK_CONN_CLOSED) return;
  h->cancel_sent = 1;
  if (send_cancel(c) < 0)
    lost_with(c, "the cancel request could not be sent; connection closed");
}

/* Server-side prepared statements: DEALLOCATE, as a request of the connection's own
 * that goes out first among the unsent ones. Its outcome does not matter: it frees
 * itself. */
static void dealloc_done(mk_req *r, void *ud) {
  (void)ud;
  mk_req_free(r);
}

static void stmt_name(const mk_conn *c, char *out, unsigned id);

static void send_dealloc(mk_conn *c, unsigned id) {
  char sql[MK_TEXT_NUMLEN + 16], name[MK_TEXT_NUMLEN + 3];
  mk_req *r;
  int n;
  stmt_name(c, name, id);
  n = snprintf(sql, sizeof sql, "DEALLOCATE %s", name);
  r = mk_req_new(1, 0, 0, dealloc_done, NULL);
  if (!r) return; /* no memory: the statement stays on the server until the session ends */
  if (mk_req_stmt(r, 0, sql, (size_t)n, -1) < 0) {
    mk_req_free(r);
    return;
  }
  requeue_front(c, r);
}

/* 1 when the connection is outside any transaction block, as far as libpq knows now. */
static int txn_idle(const mk_conn *c) {
  return c->pg && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

/* DEALLOCATE goes only outside a transaction block: inside one, a failing DEALLOCATE
 * (the user dropped the statement behind the cache's back) would abort the user's
 * transaction, and one in a failed block would not run. Until the connection is out
 * of it, the numbers wait in c->deallocs. */
static void queue_dealloc(mk_conn *c, unsigned id) {
  if (txn_idle(c) && c->nsent <= 1) {
    send_dealloc(c, id);
    return;
  }
  if (c->ndeallocs == c->deallocs_cap) {
    int cap = c->deallocs_cap ? c->deallocs_cap * 2 : 8;
    unsigned *p = realloc(c->deallocs, (size_t)cap * sizeof *p);
    if (!p) return; /* no memory: the statement stays on the server until the session ends */
    c->deallocs = p;
    c->deallocs_cap = cap;
  }
  c->deallocs[c->ndeallocs++] = id;
}

/* Sends the DEALLOCATEs that waited for the end of a transaction block. */
static void flush_deallocs(mk_conn *c) {
  if (!c->ndeallocs || c->nsent > 0 || c->state == MK_CONN_CLOSED) return;
  if (!txn_idle(c)) { /* they wait for the block's end: hold the pipeline less often */
    if (c->dealloc_hold < INT_MAX / 2) c->dealloc_hold *= 2;
    return;
  }
  c->dealloc_hold = DEALLOC_HOLD;
  while (c->ndeallocs) send_dealloc(c, c->deallocs[--c->ndeallocs]);
}

/* 1 if err is the server saying a cached statement is gone (26000) or stale (0A000:
 * "cached plan must not change result type"); then every cached statement r ran is
 * forgotten (and deallocated when stale). */
static int cache_gone(mk_conn *c, mk_req *r) {
  const char *state, *where, *msg;
  int i, used = 0, stale;
  if (!c->cache || !r->err.res) return 0;
  state = PQresultErrorField(r->err.res, PG_DIAG_SQLSTATE);
  where = PQresultErrorField(r->err.res, PG_DIAG_SOURCE_FUNCTION);
  msg = PQresultErrorField(r->err.res, PG_DIAG_MESSAGE_PRIMARY);
  if (!state || (strcmp(state, "26000") != 0 && strcmp(state, "0A000") != 0)) return 0;
  stale = state[0] == '0';
  /* only the plan cache's own 0A000, not a feature the statement itself lacks */
  if (stale && (!where || strcmp(where, "RevalidateCachedQuery") != 0)) return 0;
  for (i = 0; i < r->nstmts; i++) {
    mk_stmt *st = &r->stmts[i];
    char quoted[MK_TEXT_NUMLEN + 8], name[MK_TEXT_NUMLEN + 3];
    stmt_name(c, name, st->cache_id);
    snprintf(quoted, sizeof quoted, "\"%s\"", name);
    /* 26000 about this cache's statement (the message names it in any language), not
     * about one the SQL itself names (EXECUTE with params) */
    if (!stale && (!msg || !strstr(msg, quoted))) continue;
    if (st->cache_id && st->prepare != 1) {
      used = 1;
      if (mk_stmtcache_forget(c->cache, st->cache_id) && stale && c->state != MK_CONN_CLOSED)
        queue_dealloc(c, st->cache_id);
    }
  }
  return used;
}

/* What a 26000 about a cached statement says when nothing dropped it (session_changed). */
#define SESSION_CHANGED_MSG                                                                  \
  "%s: momoko's statement cache prepared it on this connection and nothing dropped it, so " \
  "the server session changed between requests, as behind a pooler in transaction mode "   \
  "(for PgBouncer set pgbouncer = true, which turns the statement cache off)"

/* 1 if r failed with 26000 about a statement the server prepared for the cache while
 * no DEALLOCATE or DISCARD of the owner's ran on it: the server session is not the one
 * the statement was prepared on (a pooler in transaction mode handed the client to
 * another one). The statement is forgotten and the error says so; r is not run again
 * (cache_gone's re-run is for statements the owner dropped). */
static int session_changed(mk_conn *c, mk_req *r) {
  const char *state, *msg;
  int i, found = 0;
  if (!c->cache || c->session_reset_seen || !r->err.res || r->err.message) return 0;
  state = PQresultErrorField(r->err.res, PG_DIAG_SQLSTATE);
  msg = PQresultErrorField(r->err.res, PG_DIAG_MESSAGE_PRIMARY);
  if (!state || strcmp(state, "26000") != 0 || !msg) return 0;
  for (i = 0; i < r->nstmts; i++) {
    mk_stmt *st = &r->stmts[i];
    char quoted[MK_TEXT_NUMLEN + 8], name[MK_TEXT_NUMLEN + 3];
    /* only a statement the server prepared: one whose PREPARE failed earlier in the
     * pipeline was never there (cache_gone runs it again) */
    if (!st->cache_id || st->prepare == 1 || !mk_stmtcache_confirmed(c->cache, st->cache_id)) continue;
    stmt_name(c, name, st->cache_id);
    snprintf(quoted, sizeof quoted, "\"%s\"", name);
    if (!strstr(msg, quoted)) continue;
    found = 1;
    mk_stmtcache_forget(c->cache, st->cache_id);
  }
  if (!found) return 0;
  {
    int n = snprintf(NULL, 0, SESSION_CHANGED_MSG, msg);
    char *text = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (text) snprintf(text, (size_t)n + 1, SESSION_CHANGED_MSG, msg);
    r->err.message = text; /* NULL (no memory): the server's message stays */
  }
  return 1;
}

/* Forgets the statements r prepared without the server confirming it (the PREPARE
 * failed or was skipped). */
static void forget_unconfirmed(mk_conn *c, mk_req *r) {
  int i;
  if (!c->cache) return;
  for (i = 0; i < r->nstmts; i++)
    if (r->stmts[i].prepare == 1) mk_stmtcache_forget(c->cache, r->stmts[i].cache_id);
}

/* 1 if r failed in a way that did not take effect and is worth one more run, now:
 * the server dropped a cached statement it used, or a cancel request meant for another
 * request of the pipeline hit it. The connection must be out of any transaction. -1
 * when it may be, but requests of the pipeline sent after r still run: libpq tells the
 * transaction status only once they are done, so r is asked about again then. */
static int run_again(mk_conn *c, mk_req *r) {
  const char *state;
  PGTransactionStatusType ts;
  int later;
  if (r->err.kind == MK_ERR_NONE || r->internal || c->state != MK_CONN_READY || !c->pg) return 0;
  ts = PQtransactionStatus(c->pg);
  later = ts == PQTRANS_ACTIVE && r->pipelined && c->nsent > 1;
  if (ts != PQTRANS_IDLE && !later) return 0;
  if (!r->cache_retried && cache_gone(c, r)) {
    if (later) return -1;
    r->cache_retried = 1;
    return 1;
  }
  state = r->err.res ? PQresultErrorField(r->err.res, PG_DIAG_SQLSTATE) : NULL;
  if (!r->stray_retried && !r->cancel_wanted && state && strcmp(state, "57014") == 0 &&
      r->sent_epoch != c->cancel_epoch) {
    if (later) return -1;
    r->stray_retried = 1;
    return 1;
  }
  return 0;
}

/* Puts r (not on c), which keeps its error, among the unsent requests behind those
 * parked before it, for advance() to complete it again once nothing is sent. */
static void park(mk_conn *c, mk_req *r) {
  mk_req **p = &c->head;
  while (*p && *p != c->unsent) p = &(*p)->next;
  while (*p && (*p)->recheck) p = &(*p)->next;
  r->conn = c;
  r->sent = 0;
  r->recheck = 1;
  r->next = *p;
  *p = r;
  if (!r->next) c->tail = r;
  if (c->unsent == r->next) c->unsent = r;
  c->nreqs++;
}

/* Ends r: unlinks it, sends the next request first (so the server works while the owner
 * handles this result), then hands r back through its done callback. */
static void complete(mk_conn *c, mk_req *r) {
  int again = 0;
  if (r->sent && r->err.kind != MK_ERR_NONE) forget_unconfirmed(c, r);
  if (r->sent && !session_changed(c, r)) again = run_again(c, r);
  if (again) {
    int cache_retried = r->cache_retried, stray_retried = r->stray_retried, timed_out = r->timed_out;
    mk_timer *timer = r->timer;
    r->timer = NULL; /* kept: the timeout still counts from the call */
    if (!unlink_req(c, r)) {
      r->timer = timer;
      return;
    }
    r->timer = timer;
    if (again < 0) {
      park(c, r);
      head_changed(c);
      return;
    }
    mk_req_reset(r);
    r->cache_retried = cache_retried;
    r->stray_retried = stray_retried;
    r->timed_out = timed_out;
    requeue_front(c, r);
    head_changed(c);
    if (c->state != MK_CONN_CLOSED) advance(c);
    return;
  }
  if (!unlink_req(c, r)) return;
  head_changed(c);
  flush_deallocs(c);
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
 * next one. Each one's end wakes the loop (on_cancel_end); one that has not ended
 * within cancel_deadline_ms may still arrive at any time, so the connection closes then
 * (on_cancel_deadline). The connection never waits for the threads: it may close and
 * be freed while a cancel is stuck, and only drops its references then. */
struct pending_cancel {
  mk_cancel *k;
  uint64_t started;
  struct pending_cancel *next; /* newest first */
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

/* Arms the deadline for the oldest pending cancel, or stops it when none is left.
 * Returns 0 or a negative libuv error. */
static int arm_cancel_deadline(mk_conn *c) {
  struct pending_cancel *pc, *oldest = NULL;
  uint64_t now, due;
  for (pc = c->cancels; pc; pc = pc->next) oldest = pc;
  if (!oldest) {
    mk_timer_stop(c->cancel_timer);
    return 0;
  }
  due = oldest->started + (uint64_t)c->cancel_deadline_ms;
  now = mk_loop_now(c->loop);
  return mk_timer_start(c->cancel_timer, due > now ? due - now : 0);
}

/* 1 while a cancel request is still on its way. */
static int cancels_pending(mk_conn *c) {
  drop_cancels(c, 0);
  return c->cancels != NULL;
}

static void on_recancel(void *ud) {
  mk_conn *c = ud;
  mk_req *r;
  enter(c);
  r = running(c);
  if (c->state != MK_CONN_CLOSED && r && r == c->recancel_for && c->ends == c->recancel_ends &&
      r->cancel_wanted && !cancels_pending(c) && send_cancel(c) < 0)
    lost_with(c, "the cancel request could not be sent again; connection closed");
  leave(c);
}

/* A cancel request was delivered: if its request still runs, it may have been ignored
 * (see RECANCEL_FIRST_MS); another goes after a while unless the request ends first. */
static void arm_recancel(mk_conn *c) {
  mk_req *r = running(c);
  if (c->state == MK_CONN_CLOSED || !r || !r->cancel_wanted || !r->cancel_sent || cancels_pending(c)) return;
  if (!c->recancel_timer) {
    c->recancel_timer = mk_timer_new(c->loop, on_recancel, c);
    if (!c->recancel_timer) return; /* no memory: the request's own deadline still holds */
    mk_timer_keepalive(c->recancel_timer, 0);
  }
  if (r != c->recancel_for || c->ends != c->recancel_ends) c->recancel_ms = RECANCEL_FIRST_MS;
  c->recancel_for = r;
  c->recancel_ends = c->ends;
  if (mk_timer_start(c->recancel_timer, (uint64_t)c->recancel_ms) == 0 && c->recancel_ms < RECANCEL_MAX_MS)
    c->recancel_ms *= 2;
}

/* A cancel request ended (mk_cancel's wake-up, on the loop thread). */
static void on_cancel_end(void *ud) {
  mk_conn *c = ud;
  enter(c);
  drop_cancels(c, 0);
  if (c->state != MK_CONN_CLOSED && arm_cancel_deadline(c) < 0)
    lost_with(c, "cannot start the timer of a cancel request; connection closed");
  arm_recancel(c);
  advance(c);
  leave(c);
}

static void on_cancel_deadline(void *ud) {
  mk_conn *c = ud;
  char msg[160];
  enter(c);
  if (c->state != MK_CONN_CLOSED && cancels_pending(c)) {
    snprintf(msg, sizeof msg,
             "a cancel request got no answer from the server within %d ms; connection closed",
             c->cancel_deadline_ms);
    lost_with(c, msg);
  }
  leave(c);
}

/* Starts a cancel request for the running query. 0, or -1 if none could be sent. */
static int send_cancel(mk_conn *c) {
  struct pending_cancel *pc;
  mk_cancel *k;
  if (!c->pg) return -1;
  if (!c->cancel_timer) {
    c->cancel_timer = mk_timer_new(c->loop, on_cancel_deadline, c);
    if (!c->cancel_timer) return -1; /* no deadline: better no cancel than a wedge */
    mk_timer_keepalive(c->cancel_timer, 0); /* the requests that wait keep the loop */
  }
  pc = malloc(sizeof *pc);
  if (!pc) return -1;
  k = mk_cancel_start(c->loop, c->pg, on_cancel_end, c);
  if (!k) {
    free(pc);
    return -1;
  }
  c->cancel_epoch++;
  pc->k = k;
  pc->started = mk_loop_now(c->loop);
  pc->next = c->cancels;
  c->cancels = pc;
  if (!pc->next && arm_cancel_deadline(c) < 0) {
    c->cancels = NULL;
    mk_cancel_release(k); /* the thread still sends it */
    free(pc);
    return -1;
  }
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
  mk_dns_free(c->dns);
  c->dns = NULL;
  /* nothing is sent any more: the cancels' threads go on alone, unheard */
  drop_cancels(c, 1);
  mk_timer_stop(c->cancel_timer);
  mk_timer_stop(c->recancel_timer);
  mk_timer_stop(c->resume_timer);
  c->copy_end_pending = 0;
  c->copy_in = NULL;
  c->paused = 0;
  mk_req_free(c->setsession);
  c->setsession = NULL;
  list = c->head;
  c->head = c->tail = c->unsent = NULL;
  c->nsent = c->nreqs = 0;
  c->barrier = 0;
  /* Detach every request before the first callback: a callback may cancel or time
   * out a request further down the list, which must then find it off the queue. */
  for (r = list; r; r = r->next) {
    r->conn = NULL;
    mk_timer_close(r->timer);
    r->timer = NULL;
    /* the server ended the session while it ran the oldest request: the requests of
     * the pipeline behind it never started */
    if (r->sent && r != list && c->server_ended && r->err.kind == MK_ERR_NONE) r->may_have_run = 0;
    /* parked to run again: its error (the cache's 26000, a stray cancel) took no effect
     * and is none of the caller's business; it ends as one never sent */
    if (r->recheck) {
      mk_error_clear(&r->err);
      r->may_have_run = 0;
    }
    if (r->err.kind == MK_ERR_NONE) mk_error_set(&r->err, kind, r->sent ? inflight_msg : queued_msg);
  }
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

/* The connection died, or must be given up (why: the reason; NULL for libpq's own
 * message): the running request fails with that message (it may have run), queued ones
 * with a message saying they were never sent. All with OperationalError. */
static void lost_with(mk_conn *c, const char *why) {
  char msg[512], queued[600];
  size_t n;
  if (c->state == MK_CONN_CLOSED) return;
  snprintf(msg, sizeof msg, "%s", why ? why : c->pg ? PQerrorMessage(c->pg) : "");
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

static void lost(mk_conn *c) { lost_with(c, NULL); }

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

/* What the socket is watched for: writable while libpq holds unsent output (or a COPY
 * waits to go on), readable unless a stream's consumer is behind. */
static int watch_events(const mk_conn *c, int unsent_output) {
  int ev = c->paused ? 0 : MK_READ;
  if (unsent_output || c->copy_end_pending || c->copy_in) ev |= MK_WRITE;
  return ev;
}

static void flush(mk_conn *c) {
  int rc = PQflush(c->pg);
  if (rc < 0) {
    lost(c);
    return;
  }
  if (mk_io_watch(c->io, watch_events(c, rc == 1)) < 0) lost(c);
}

/* Ends a COPY: CopyDone (errmsg NULL: a COPY FROM STDIN whose data all went, or a
 * replication stream), or CopyFail with errmsg, which makes the server roll the COPY
 * back. PQputCopyEnd returns 0 when libpq's buffer is full: it is tried again once the
 * socket is writable. */
static void copy_end(mk_conn *c, const char *errmsg) {
  int rc;
  if (errmsg && errmsg != c->copy_end_msg) snprintf(c->copy_end_msg, sizeof c->copy_end_msg, "%s", errmsg);
  rc = PQputCopyEnd(c->pg, errmsg ? c->copy_end_msg : NULL);
  if (rc < 0) {
    lost(c);
    return;
  }
  c->copy_end_pending = rc == 0 ? (errmsg ? 1 : 2) : 0;
  flush(c);
}

/* What execute, stream and the COPY methods answer to a COPY of the other direction. */
#define COPY_FROM_MSG "COPY FROM STDIN runs through copy_from(sql, source), not this method"
#define COPY_TO_MSG "COPY TO STDOUT runs through copy_to(sql, sink), not this method"

static int can_send(const mk_conn *c) {
  return c->state == MK_CONN_READY || (c->state == MK_CONN_CONNECTING && c->handshake_done);
}

/* The statement of r's current step, or NULL for BEGIN, COMMIT and ROLLBACK. */
static mk_stmt *step_stmt(mk_req *r) {
  if (!(r->flags & MK_REQ_TXN)) return &r->stmts[0];
  if (r->step >= 1 && r->step <= r->nstmts) return &r->stmts[r->step - 1];
  return NULL;
}

static const char *step_sql(mk_req *r) {
  const mk_stmt *st = step_stmt(r);
  if (st) return st->sql;
  return r->step == 0 ? "BEGIN" : r->step == COMMIT_STEP(r) ? "COMMIT" : "ROLLBACK";
}

/* Consults the statement cache once per run of st: whether it runs prepared, and
 * whether this run prepares it. */
static void use_cache(mk_conn *c, mk_stmt *st) {
  mk_stmtcache_use_t u;
  if (st->cache_checked) return;
  st->cache_checked = 1;
  if (!c->cache || st->nparams < 0) return;
  if (mk_stmtcache_use(c->cache, st->sql, st->nparams, st->types, &u) < 0) return; /* unnamed */
  if (u.evicted) queue_dealloc(c, u.evicted);
  st->cache_id = u.id;
  st->prepare = u.prepare;
}

/* The server-side name of cached statement id, "mk_<stmt_base + id>", in out
 * (MK_TEXT_NUMLEN + 3 bytes). */
static void stmt_name(const mk_conn *c, char *out, unsigned id) {
  memcpy(out, "mk_", 3);
  mk_text_int(out + 3, (long long)(c->stmt_base + id));
}

/* Hands one command of r's current step to libpq: the PREPARE of its statement when
 * prep is set, else the statement itself (or BEGIN, COMMIT, ROLLBACK). libpq's answer:
 * 1 sent, 0 refused. */
static int send_command(mk_conn *c, mk_req *r, int prep) {
  const mk_stmt *st = step_stmt(r);
  char name[MK_TEXT_NUMLEN + 3];
  /* libpq's pipeline mode refuses PQsendQuery: one statement goes as an unnamed one */
  if (!st || st->nparams < 0)
    return c->in_pipeline ? PQsendQueryParams(c->pg, step_sql(r), 0, NULL, NULL, NULL, NULL, 0)
                          : PQsendQuery(c->pg, step_sql(r));
  if (!st->cache_id)
    return PQsendQueryParams(c->pg, st->sql, st->nparams, st->types, (const char *const *)st->values,
                             st->lengths, st->formats, 0);
  stmt_name(c, name, st->cache_id);
  if (prep) return PQsendPrepare(c->pg, name, st->sql, st->nparams, st->types);
  return PQsendQueryPrepared(c->pg, name, st->nparams, (const char *const *)st->values, st->lengths,
                             st->formats, 0);
}

static void read_input(mk_conn *c, int from_socket);

/* A stream's consumer caught up (mk_conn_resume): what libpq read already is handed
 * out, and the socket is read again once that is used up (its readiness, watched
 * again, says so). */
static void on_resume(void *ud) {
  mk_conn *c = ud;
  enter(c);
  if (can_send(c) && !c->paused && running(c)) {
    if (mk_io_watch(c->io, watch_events(c, 0)) < 0)
      lost(c);
    else
      read_input(c, 0);
  }
  leave(c);
}

void mk_conn_resume(mk_req *r) {
  mk_conn *c = r->conn;
  if (!c || !c->paused || running(c) != r || c->state == MK_CONN_CLOSED) return;
  /* the timer exists: it was made when the stream was sent, and starting it fails only
   * for a closing handle */
  if (mk_timer_start(c->resume_timer, 0) == 0) c->paused = 0;
}

/* Outside pipeline mode: sends r's current step (the PREPARE of its statement first,
 * when the cache says this run prepares it). */
static void send_step(mk_conn *c, mk_req *r) {
  mk_stmt *st = step_stmt(r);
  if (st && !st->cache_checked) {
    use_cache(c, st);
    r->prep_phase = st->prepare == 1;
  }
  if (!send_command(c, r, r->prep_phase)) {
    if (PQstatus(c->pg) == CONNECTION_BAD) {
      lost(c);
    } else {
      if (r->err.kind == MK_ERR_NONE) /* a failed ROLLBACK keeps the statement's error */
        mk_error_set(&r->err, MK_ERR_INTERFACE, PQerrorMessage(c->pg));
      complete(c, r);
    }
    return;
  }
  c->single_row_set = 0; /* a send out of pipeline mode ends it */
  if ((r->flags & MK_REQ_STREAM) && !r->prep_phase) {
    if (!PQsetSingleRowMode(c->pg)) {
      lost_with(c, "libpq refused single-row mode for a stream");
      return;
    }
    c->single_row_set = 1;
    if (!c->resume_timer && !(c->resume_timer = mk_timer_new(c->loop, on_resume, c))) {
      lost_with(c, "out of memory");
      return;
    }
  }
  if (!r->prep_phase) r->may_have_run = 1; /* a PREPARE alone changes nothing */
  if ((r->flags & MK_REQ_TXN) && r->step == 0) r->txn_started = 1;
  flush(c);
}

/* Where the results of a pipelined r start: its first step, at the PREPARE when its
 * statement is prepared by this run. */
static void first_command(mk_req *r) {
  const mk_stmt *st;
  r->step = (r->flags & MK_REQ_TXN) ? 0 : 1;
  st = step_stmt(r);
  r->prep_phase = st && st->prepare == 1;
}

/* A command of pipelined r has all its results: the next one's come. */
static void next_command(mk_req *r) {
  const mk_stmt *st;
  if (r->prep_phase) {
    r->prep_phase = 0;
    return;
  }
  if (!(r->flags & MK_REQ_TXN) || r->rolling_back || r->step >= COMMIT_STEP(r)) return;
  r->step++;
  st = step_stmt(r);
  r->prep_phase = st && st->prepare == 1;
}

/* Pipeline mode: sends all of r as one group (BEGIN, each statement with its PREPARE
 * first when this run prepares it, COMMIT), then one sync, so that it fails or succeeds
 * alone. 0, or -1 when libpq refused (the connection is then given up). */
static int send_group(mk_conn *c, mk_req *r) {
  int txn = (r->flags & MK_REQ_TXN) != 0, last = txn ? COMMIT_STEP(r) : 1;
  for (r->step = txn ? 0 : 1; r->step <= last; r->step++) {
    mk_stmt *st = step_stmt(r);
    if (st) use_cache(c, st);
    if (st && st->prepare == 1 && !send_command(c, r, 1)) return -1;
    if (!send_command(c, r, 0)) return -1;
  }
  if (!PQpipelineSync(c->pg)) return -1;
  r->pipelined = 1;
  r->may_have_run = 1;
  r->txn_started = txn;
  first_command(r);
  return 0;
}

/* 1 if every statement of r can go out in pipeline mode. The setsession transaction
 * (which runs before the connection counts as connected), streams and COPY never do. */
static int pipelinable(const mk_req *r) {
  int i;
  if (r->internal || (r->flags & (MK_REQ_STREAM | MK_REQ_COPY_IN | MK_REQ_COPY_OUT))) return 0;
  for (i = 0; i < r->nstmts; i++)
    if (!mk_sql_pipelinable(r->stmts[i].sql, strlen(r->stmts[i].sql))) return 0;
  return 1;
}

/* Switches libpq's pipeline mode to on (c must have nothing sent). -1: refused, and c
 * given up. */
static int set_pipeline_mode(mk_conn *c, int on) {
  if (c->in_pipeline == on) return 0;
  if (!(on ? PQenterPipelineMode(c->pg) : PQexitPipelineMode(c->pg))) {
    lost(c);
    return -1;
  }
  c->in_pipeline = on;
  return 0;
}

/* Sends what may go now: outside pipeline mode the oldest request once nothing else
 * runs; in pipeline mode every pipelinable request in order, up to a transaction
 * (nothing goes behind one until it ended) or one that must run alone (it waits until
 * the pipeline is empty). Nothing goes while a cancel request is on its way. Returns 1
 * if it sent a request. */
static int advance(mk_conn *c) {
  int sent = 0;
  while (can_send(c) && !c->broken && c->unsent && !c->barrier && !cancels_pending(c)) {
    mk_req *r = c->unsent;
    int pipe;
    if (r->recheck) { /* parked by complete(): decided once nothing runs */
      if (c->nsent > 0) break;
      c->unsent = r->next;
      c->nsent++;
      r->sent = 1;
      r->recheck = 0;
      complete(c, r);
      continue;
    }
    if (c->nsent > 0 && c->ndeallocs >= c->dealloc_hold) break; /* drain: flush_deallocs */
    pipe = c->pipeline && !c->single_row_set && pipelinable(r);
    if ((!pipe || !c->in_pipeline) && c->nsent > 0) break; /* wait until the rest ran */
    if (set_pipeline_mode(c, pipe) < 0) break;
    c->unsent = r->next;
    c->nsent++;
    r->sent = 1;
    r->sent_epoch = c->cancel_epoch;
    sent = 1;
    if (!pipe) {
      r->step = (r->flags & MK_REQ_TXN) ? 0 : 1;
      send_step(c, r);
      return 1;
    }
    if (r->flags & MK_REQ_TXN) c->barrier = 1;
    if (send_group(c, r) < 0) {
      lost(c);
      return 1;
    }
  }
  if (sent && can_send(c)) flush(c);
  return sent;
}

/* Sets r's error unless it has one. */
static void set_error(mk_req *r, mk_kind kind, const char *msg) {
  if (r->err.kind == MK_ERR_NONE) mk_error_set(&r->err, kind, msg);
}

/* COPY data sent per loop turn at most, so that other connections of the loop get
 * their turn during a long COPY FROM STDIN. */
#define COPY_TURN_BYTES (1u << 20)

/* Sends the COPY data of r (c->copy_in) from its source, piece by piece, until the
 * source ends or fails, the request is cancelled, or libpq holds unsent output: then it
 * goes on when the socket is writable. libpq never holds more than one piece beyond
 * what the socket took. */
static void copy_pump(mk_conn *c, mk_req *r) {
  size_t turn = 0;
  for (;;) {
    const char *data = NULL, *why = NULL;
    size_t len = 0;
    int rc = PQflush(c->pg);
    if (rc < 0) {
      lost(c);
      return;
    }
    if (rc == 1 || turn >= COPY_TURN_BYTES) {
      if (mk_io_watch(c->io, watch_events(c, 1)) < 0) lost(c);
      return;
    }
    if (r->cancel_wanted) {
      why = "canceling statement due to user request";
    } else {
      rc = r->io.copy_src(r, &data, &len, r->io.ud);
      if (c->state == MK_CONN_CLOSED || running(c) != r || c->copy_in != r) return; /* the source closed c */
      if (rc > 0 && len > 0x7fffffff) {
        set_error(r, MK_ERR_INTERFACE, "copy_from: a piece of COPY data is larger than libpq takes (2 GB)");
        rc = -1;
      }
      if (rc > 0) {
        if (len > 0 && PQputCopyData(c->pg, data, (int)len) != 1) {
          lost(c);
          return;
        }
        turn += len;
        continue;
      }
      if (rc < 0) {
        set_error(r, MK_ERR_INTERFACE, "copy_from: the source failed");
        why = mk_error_message(&r->err);
      }
    }
    c->copy_in = NULL;
    copy_end(c, why);
    return;
  }
}

/* A stream hands the rows it was given since the last call on (io.row(NULL)). */
static void flush_rows(mk_req *r) {
  if (!r->rows_unflushed) return;
  r->rows_unflushed = 0;
  (void)r->io.row(r, NULL, r->io.ud); /* no row: nothing to stop for */
}

/* 1 for the command tag of a command that drops prepared statements of the session. */
static int drops_statements(const char *tag) {
  return tag && (strncmp(tag, "DEALLOCATE", 10) == 0 || strncmp(tag, "DISCARD", 7) == 0);
}

/* Files one PGresult of r's current step. Only results that carry rows or a command's
 * outcome are kept as results; every other status ends in an error or a notice. */
static void take_result(mk_conn *c, mk_req *r, PGresult *res) {
  int user_step = !r->prep_phase && (!(r->flags & MK_REQ_TXN) || (r->step >= 1 && r->step <= r->nstmts));
  ExecStatusType status = PQresultStatus(res);
  switch (status) {
  case PGRES_FATAL_ERROR:
    if (r->err.kind == MK_ERR_NONE) {
      const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      if (state && strncmp(state, "57P0", 4) == 0 && state[4] >= '1' && state[4] <= '3')
        c->server_ended = 1;
      r->err_step = r->step;
      /* The server ended the session (57P01 admin shutdown, 57P02 crash shutdown,
       * 57P03 cannot connect now) and answered this request with it, before any
       * result: the request was rolled back, so it cannot have taken effect. */
      if (state && strncmp(state, "57P0", 4) == 0 && state[4] >= '1' && state[4] <= '3' &&
          !(r->flags & MK_REQ_TXN) && !r->results[0])
        r->may_have_run = 0;
      /* No SQLSTATE: libpq's own error. With the connection still up, that is libpq 15
       * refusing a malformed answer (it never makes PGRES_BAD_RESPONSE): the server's
       * fault, not the statement's, so OperationalError as for a lost connection. */
      mk_error_take_result(&r->err, res);
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
  case PGRES_BAD_RESPONSE: {
    char msg[600];
    snprintf(msg, sizeof msg, "the server's response was not understood: %s", PQresultErrorMessage(res));
    PQclear(res);
    set_error(r, MK_ERR_OPERATIONAL, msg);
    return;
  }
  case PGRES_NONFATAL_ERROR: /* libpq hands these to the notice receiver; just in case */
    notify(c, PQresultErrorMessage(res));
    PQclear(res);
    return;
  case PGRES_COPY_IN:
    PQclear(res);
    if ((r->flags & MK_REQ_COPY_IN) && r->err.kind == MK_ERR_NONE) {
      c->copy_in = r;
      copy_pump(c, r);
      return;
    }
    /* the server answers the CopyFail with 57014; the kind that says why is this one */
    set_error(r, MK_ERR_NOT_SUPPORTED, COPY_FROM_MSG);
    copy_end(c, COPY_FROM_MSG);
    return;
  case PGRES_COPY_OUT:
    PQclear(res);
    r->copy_out = 1;
    if (!(r->flags & MK_REQ_COPY_OUT)) set_error(r, MK_ERR_NOT_SUPPORTED, COPY_TO_MSG);
    return;
  case PGRES_COPY_BOTH:
    /* a replication stream: it would never end by itself. CopyDone asks the server to
     * stop; what it still sends is read and dropped, then the command ends. */
    PQclear(res);
    r->copy_out = 1;
    set_error(r, MK_ERR_NOT_SUPPORTED, "replication streams (COPY BOTH) are not supported by momoko");
    copy_end(c, NULL);
    return;
  case PGRES_SINGLE_TUPLE: /* only a stream asks for these */
    if (!(r->flags & MK_REQ_STREAM) || r->err.kind != MK_ERR_NONE) {
      PQclear(res);
      return;
    }
    r->rows_unflushed = 1;
    if (r->io.row(r, res, r->io.ud) && c->state != MK_CONN_CLOSED && running(c) == r) {
      c->paused = 1;
      flush(c); /* watched for writes only now */
    }
    return;
  case PGRES_TUPLES_OK:
  case PGRES_COMMAND_OK:
  case PGRES_EMPTY_QUERY:
    if (r->prep_phase && status == PGRES_COMMAND_OK) {
      mk_stmt *st = step_stmt(r);
      if (st) {
        st->prepare = 2; /* the server has it */
        if (c->cache) mk_stmtcache_confirm(c->cache, st->cache_id);
      }
    }
    if (user_step && r->done != dealloc_done && status == PGRES_COMMAND_OK && drops_statements(PQcmdStatus(res)))
      c->session_reset_seen = 1;
    if (r->err.kind != MK_ERR_NONE || !user_step) {
      PQclear(res);
      return;
    }
    {
      int i = (r->flags & MK_REQ_TXN) ? r->step - 1 : 0;
      PQclear(r->results[i]); /* several statements in one string: keep the last */
      r->results[i] = res;
    }
    return;
  case PGRES_PIPELINE_ABORTED: /* skipped after the group's error: never data */
    PQclear(res);
    set_error(r, MK_ERR_INTERFACE, "the pipeline was aborted");
    return;
  default: { /* a status this libpq does not document */
    char msg[160];
    snprintf(msg, sizeof msg, "unexpected result status from libpq: %s", PQresStatus(status));
    PQclear(res);
    set_error(r, MK_ERR_INTERFACE, msg);
    return;
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
  if (r->prep_phase && r->err.kind == MK_ERR_NONE) { /* prepared: now run it */
    r->prep_phase = 0;
    send_step(c, r);
    return;
  }
  r->prep_phase = 0;
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

/* Pipelined r's sync came: all its results are in. A transaction that failed inside
 * its block (the server skipped the rest, COMMIT included, and waits in the failed
 * block) is rolled back first, by a group of its own; nothing else was sent behind it. */
static void group_done(mk_conn *c, mk_req *r) {
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    lost(c);
    return;
  }
  if (r->err.kind != MK_ERR_NONE && (r->flags & MK_REQ_TXN) && (r->flags & MK_REQ_ROLLBACK) &&
      !r->rolling_back && r->err_step >= 1 && r->err_step <= r->nstmts) {
    r->rolling_back = 1;
    r->step = ROLLBACK_STEP(r);
    r->prep_phase = 0;
    if (!PQsendQueryParams(c->pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(c->pg)) {
      lost(c);
      return;
    }
    flush(c);
    return;
  }
  complete(c, r);
}

/* Reads the data of a COPY TO STDOUT: to io.copy_sink for a COPY_OUT request without an
 * error, else (a COPY nobody asked for, a replication stream, a sink that failed) read
 * and dropped. 0 means wait for more input. */
static int drain_copy(mk_conn *c, mk_req *r) {
  char *buf;
  int n;
  while ((n = PQgetCopyData(c->pg, &buf, 1)) > 0) {
    int sink = (r->flags & MK_REQ_COPY_OUT) && r->err.kind == MK_ERR_NONE;
    if (sink && r->io.copy_sink(r, buf, (size_t)n, r->io.ud) < 0)
      set_error(r, MK_ERR_INTERFACE, "copy_to: the sink failed");
    PQfreemem(buf);
    if (sink && (!can_send(c) || running(c) != r)) return 0; /* the sink closed c */
  }
  if (!can_send(c) || running(c) != r) return 0; /* a notice hook closed c */
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

/* Hands the notifications libpq parsed so far to hooks->notify, freeing each after the
 * call. Returns 0, or -1 when a hook closed c. */
static int deliver_notes(mk_conn *c) {
  PGnotify *note;
  while (c->state != MK_CONN_CLOSED && (note = PQnotifies(c->pg)) != NULL) {
    if (c->hooks.notify) c->hooks.notify(c, note->relname, note->extra, note->be_pid, c->ud);
    PQfreemem(note);
  }
  return c->state == MK_CONN_CLOSED ? -1 : 0;
}

/* Reads the socket into libpq's buffer (from_socket; without it, on a resume, only
 * what the buffer holds is used: reading on while it holds rows of a paused stream
 * would make libpq enlarge it at each resume, up to all that the server sent), then
 * hands out what it holds. */
static void read_input(mk_conn *c, int from_socket) {
  if (c->paused) return; /* a readiness reported before the pause */
  if (from_socket && !PQconsumeInput(c->pg)) {
    lost(c);
    return;
  }
  for (;;) {
    mk_req *r;
    PGresult *res;
    /* libpq parses a notification behind a finished result only on the next call:
     * hand out those of the result just taken before the next one (a hook may have
     * closed c or ended requests: look again) */
    if (deliver_notes(c) < 0) return;
    if (!can_send(c) || !(r = running(c))) break;
    if (r->copy_out && !drain_copy(c, r)) return;
    if (c->copy_end_pending || c->copy_in) return; /* the COPY goes on until its end was sent */
    if (c->paused) { /* the stream's consumer is behind: mk_conn_resume reads on */
      flush_rows(r);
      return;
    }
    /* libpq calls the notice hook while parsing here; it may have closed c (and ended
     * r): look again before touching r */
    if (PQisBusy(c->pg)) {
      if (!can_send(c) || running(c) != r) return;
      if (!tls_pending(c)) {
        flush_rows(r); /* the input read so far is used up */
        return;
      }
      /* bytes already inside OpenSSL: the socket will not say so, read them now */
      if (!PQconsumeInput(c->pg)) {
        lost(c);
        return;
      }
      continue;
    }
    if (!can_send(c) || running(c) != r) break;
    res = PQgetResult(c->pg);
    if (!can_send(c) || running(c) != r) {
      PQclear(res);
      break;
    }
    if (!r->pipelined) {
      if (res)
        take_result(c, r, res);
      else
        step_done(c, r);
    } else if (!res) {
      next_command(r);
    } else if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
      PQclear(res);
      group_done(c, r);
    } else {
      take_result(c, r, res);
    }
  }
  if (c->state != MK_CONN_CLOSED && deliver_notes(c) < 0) return;
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

/* A random base for the names of the connection's cached statements, below 2^62 (so
 * that base + id fits a long long). Random, so that no two sessions, of this process
 * or another, name statements alike: a pooler that hands server sessions around (as
 * PgBouncer in transaction mode does) then makes a cached statement "not exist"
 * (26000) on the wrong server session, and never runs another client's statement of
 * the same name. Without OpenSSL's generator, the clock and c's address. */
static unsigned long long random_stmt_base(const mk_conn *c) {
  unsigned long long v = 0;
  if (RAND_bytes((unsigned char *)&v, (int)sizeof v) != 1)
    v = (unsigned long long)mk_loop_now(c->loop) * 0x9e3779b97f4a7c15ULL ^ (unsigned long long)(uintptr_t)c;
  return v >> 2;
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
  if (c->cache_size > 0 && !(c->cache = mk_stmtcache_new(c->cache_size))) {
    mk_req_free(ss);
    connect_fail_msg(c, "out of memory");
    return;
  }
  if (c->cache) c->stmt_base = random_stmt_base(c);
  if (!ss) {
    became_ready(c);
    return;
  }
  requeue_front(c, ss); /* nothing was sent: it goes first */
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
    if (c->timer) {
      /* libpq went on to another host (the last one refused the connection, or was
       * not read-write): connect_timeout counts afresh for it, as in libpq's own
       * connect */
      int i = mk_hosts_current(c->pg, c->host_index);
      if (i >= 0 && i != c->host_index) {
        /* (the first host seen after a start already has its full time) */
        if ((c->host_index >= 0 || i > 0) && mk_timer_start(c->timer, (uint64_t)c->connect_timeout_ms) < 0) {
          connect_fail_msg(c, "cannot start the connect timer");
          return;
        }
        c->host_index = i;
      }
    }
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
      read_input(c, 1);
      if (can_send(c)) lost(c);
    } else {
      if (events & MK_WRITE) {
        if (c->copy_in) {
          copy_pump(c, c->copy_in);
          if (!c->copy_in && !c->copy_end_pending) events |= MK_READ; /* as below */
        } else if (c->copy_end_pending) {
          copy_end(c, c->copy_end_pending == 1 ? c->copy_end_msg : NULL);
          /* read_input stopped while the end was not sent: what libpq buffered since
           * is read now, the socket may not say so again */
          if (!c->copy_end_pending) events |= MK_READ;
        } else
          flush(c);
      }
      if ((events & MK_READ) && can_send(c)) read_input(c, 1);
    }
  }
  leave(c);
}

static void start_pq(mk_conn *c, const char *conninfo, const char *const *kw, const char *const *vals);

/* connect_timeout ran out. While libpq is still on a host of a list that has more,
 * that host is given up: libpq starts again with the hosts after it (libpq's blocking
 * connect does the same). Otherwise the connect fails. */
static void on_connect_timeout(void *ud) {
  mk_conn *c = ud;
  enter(c);
  if (c->state == MK_CONN_CONNECTING) {
    mk_hosts_rest rest;
    int rc = !c->handshake_done && c->pg ? mk_hosts_after(c->pg, c->host_index, &rest) : 0;
    if (rc < 0) {
      connect_fail_msg(c, "out of memory");
    } else if (rc == 0) {
      connect_fail_msg(c, "connection timeout expired");
    } else {
      mk_io_close(c->io);
      c->io = NULL;
      finish_pg(c);
      c->host_index = -1;
      if (mk_timer_start(c->timer, (uint64_t)c->connect_timeout_ms) < 0)
        connect_fail_msg(c, "cannot start the connect timer");
      else
        start_pq(c, NULL, (const char *const *)rest.kw, (const char *const *)rest.vals);
      mk_hosts_rest_free(&rest);
    }
  }
  leave(c);
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

/* Starts libpq's connect, from a conninfo string or from keyword/value arrays. */
static void start_pq(mk_conn *c, const char *conninfo, const char *const *kw, const char *const *vals) {
  c->pg = kw ? PQconnectStartParams(kw, vals, 0) : PQconnectStart(conninfo);
  if (!c->pg)
    connect_fail_msg(c, "out of memory");
  else if (PQstatus(c->pg) == CONNECTION_BAD)
    lost(c); /* a malformed conninfo: libpq's message says what */
  else if (attach_sink(c) < 0)
    connect_fail_msg(c, "out of memory");
  /* libpq's first PQconnectPoll step waits for the socket to be writable */
  else if (rewatch(c, MK_WRITE) < 0)
    lost(c);
}

/* The host names are resolved (mk_dns.h): libpq starts with their addresses. */
static void on_dns_done(void *ud, const char *const *kw, const char *const *vals, const char *err) {
  mk_conn *c = ud;
  enter(c);
  c->dns = NULL; /* it frees itself after this */
  if (c->state == MK_CONN_CONNECTING) {
    if (err)
      connect_fail_msg(c, err);
    else
      start_pq(c, NULL, kw, vals);
  }
  leave(c);
}

int mk_conn_connect(mk_conn *c, const char *conninfo, const char *const *setsession,
                    int nsetsession) {
  int ms = 0, rc;
  if (c->state != MK_CONN_NEW) return -1;
  enter(c);
  c->state = MK_CONN_CONNECTING;
  if (nsetsession > 0 && !(c->setsession = setsession_req(c, setsession, nsetsession))) {
    connect_fail_msg(c, "out of memory");
    leave(c);
    return 0;
  }
  rc = mk_dns_start(c->loop, conninfo, on_dns_done, c, &c->dns, &ms);
  if (ms > 0) c->cancel_deadline_ms = ms;
  c->connect_timeout_ms = ms;
  c->host_index = -1;
  if (rc < 0) {
    connect_fail_msg(c, "out of memory");
  } else {
    if (ms > 0 && c->state == MK_CONN_CONNECTING) {
      c->timer = mk_timer_new(c->loop, on_connect_timeout, c);
      if (!c->timer || mk_timer_start(c->timer, (uint64_t)ms) < 0)
        connect_fail_msg(c, "cannot start the connect timer");
    }
    if (rc == 0 && c->state == MK_CONN_CONNECTING) start_pq(c, conninfo, NULL, NULL);
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
  if (!r->sent) {
    snprintf(msg, sizeof msg, "query timed out after %d ms while waiting for the connection", r->timeout_ms);
    mk_req_fail(r, MK_ERR_TIMEOUT, msg);
    complete(c, r);
  } else if (!r->timed_out) {
    /* ask the server to cancel (in a pipeline: once the requests sent before it are
     * done); wait as long again (at least a second) for its answer */
    int now = running(c) == r && !r->cancel_sent;
    r->timed_out = 1;
    r->cancel_wanted = 1;
    if (now) r->cancel_sent = 1;
    if ((now && send_cancel(c) < 0) ||
        mk_timer_start(r->timer, r->timeout_ms < 1000 ? 1000 : (uint64_t)r->timeout_ms) < 0) {
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
  append_req(c, r);
  if (c->depth == 0) {
    enter(c);
    advance(c);
    leave(c);
  }
  return 0;
}

int mk_conn_cancel(mk_conn *c, mk_req *r) {
  if (r->conn != c) return 0;
  enter(c);
  if (r->sent) {
    /* a request of a pipeline that waits for those sent before it: its cancel request
     * goes once it runs (head_changed) */
    int now = running(c) == r && !r->cancel_sent;
    r->cancel_wanted = 1;
    if (now) r->cancel_sent = 1;
    if (now && send_cancel(c) < 0) {
      /* no cancel request can be sent (no memory, no thread): the connection is
       * closed rather than left running what the caller asked to stop */
      mk_req_fail(r, MK_ERR_QUERY_CANCELED,
                  "canceling statement due to user request: the cancel request could not be sent, connection closed");
      lost(c);
    }
  } else {
    mk_req_fail(r, MK_ERR_QUERY_CANCELED, "canceling statement due to user request (it was not sent yet)");
    complete(c, r);
  }
  leave(c);
  return 1;
}

void mk_conn_close(mk_conn *c) {
  if (c->state == MK_CONN_CLOSED) return;
  enter(c);
  if (running(c) && c->pg) (void)send_cancel(c); /* do not leave the backend busy */
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

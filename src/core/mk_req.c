/* mk_req: request construction, results and errors (see mk_req.h). */
#include "mk_req.h"

#include <stdlib.h>
#include <string.h>

/* One block holds the request, its statements and its result slots. */
mk_req *mk_req_new(int nstmts, unsigned flags, int timeout_ms, mk_req_done_fn done, void *ud) {
  mk_req *r;
  size_t n;
  if (nstmts < 1) return NULL;
  n = (size_t)nstmts;
  r = calloc(1, sizeof *r + n * sizeof *r->stmts + n * sizeof *r->results);
  if (!r) return NULL;
  r->stmts = (mk_stmt *)(r + 1);
  r->results = (PGresult **)(r->stmts + n);
  r->nstmts = nstmts;
  r->flags = flags;
  r->timeout_ms = timeout_ms;
  r->done = done;
  r->ud = ud;
  return r;
}

/* A value lives in its parameter's inline slot when it fits (with its NUL). */
static int inline_value(const mk_stmt *st, int j) {
  return st->values[j] == st->inline_vals + (size_t)j * MK_STMT_INLINE;
}

static void stmt_free(mk_stmt *st) {
  int j;
  for (j = 0; j < st->nparams; j++)
    if (!inline_value(st, j)) free(st->values[j]);
  free(st->block);
}

/* One block per statement: the parameter arrays, the inline value slots, then the SQL. */
int mk_req_stmt(mk_req *r, int i, const char *sql, size_t len, int nparams) {
  mk_stmt *st = &r->stmts[i];
  size_t n = nparams > 0 ? (size_t)nparams : 0;
  char *b;
  stmt_free(st);
  memset(st, 0, sizeof *st);
  st->nparams = -1;
  b = malloc(n * (sizeof *st->values + sizeof *st->lengths + sizeof *st->formats + sizeof *st->types +
                  MK_STMT_INLINE) + len + 1);
  if (!b) return -1;
  st->block = b;
  st->values = (char **)b;
  st->types = (Oid *)(st->values + n);
  st->lengths = (int *)(st->types + n);
  st->formats = st->lengths + n;
  st->inline_vals = (char *)(st->formats + n);
  st->sql = st->inline_vals + n * MK_STMT_INLINE;
  memcpy(st->sql, sql, len);
  st->sql[len] = '\0';
  memset(st->values, 0, n * sizeof *st->values);
  if (nparams < 0) return 0;
  st->nparams = nparams;
  return 0;
}

int mk_req_param(mk_req *r, int i, int j, const char *val, size_t len, int format, Oid type) {
  mk_stmt *st = &r->stmts[i];
  char *copy = NULL;
  if (val && len > (size_t)MK_REQ_PARAM_MAX) return -2; /* libpq takes an int length */
  if (val) {
    copy = len < MK_STMT_INLINE ? st->inline_vals + (size_t)j * MK_STMT_INLINE : malloc(len + 1);
    if (!copy) return -1;
    if (st->values[j] && !inline_value(st, j)) free(st->values[j]);
    memcpy(copy, val, len);
    copy[len] = '\0';
  } else if (st->values[j] && !inline_value(st, j)) {
    free(st->values[j]);
  }
  st->values[j] = copy;
  st->lengths[j] = (int)len;
  st->formats[j] = format;
  st->types[j] = type;
  return 0;
}

static void req_clear_results(mk_req *r) {
  int i;
  for (i = 0; i < r->nstmts; i++) {
    PQclear(r->results[i]);
    r->results[i] = NULL;
  }
  mk_error_clear(&r->err);
}

void mk_req_reset(mk_req *r) {
  int i;
  req_clear_results(r);
  r->step = 0;
  r->may_have_run = 0;
  r->txn_started = 0;
  r->timed_out = 0;
  r->copy_out = 0;
  r->sent = 0;
  r->prep_phase = 0;
  r->pipelined = 0;
  r->rolling_back = 0;
  r->err_step = 0;
  r->cancel_wanted = 0;
  r->cancel_sent = 0;
  r->sent_epoch = 0;
  r->cache_retried = 0;
  r->stray_retried = 0;
  r->recheck = 0;
  r->rows_unflushed = 0;
  for (i = 0; i < r->nstmts; i++) {
    r->stmts[i].cache_checked = 0;
    r->stmts[i].cache_id = 0;
    r->stmts[i].prepare = 0;
  }
}

void mk_req_free(mk_req *r) {
  int i;
  if (!r) return;
  mk_timer_close(r->timer);
  req_clear_results(r);
  for (i = 0; i < r->nstmts; i++) stmt_free(&r->stmts[i]);
  free(r);
}

void *mk_req_ud(const mk_req *r) { return r->ud; }

const char *mk_req_sql(const mk_req *r, int i) {
  return (i >= 0 && i < r->nstmts && r->stmts[i].sql) ? r->stmts[i].sql : "";
}

void mk_req_set_done(mk_req *r, mk_req_done_fn done, void *ud) {
  r->done = done;
  r->ud = ud;
}

void mk_req_set_io(mk_req *r, const mk_req_io *io) { r->io = *io; }

void mk_req_get_done(const mk_req *r, mk_req_done_fn *done, void **ud) {
  *done = r->done;
  *ud = r->ud;
}

int mk_req_count(const mk_req *r) { return r->nstmts; }

PGresult *mk_req_take_result(mk_req *r, int i) {
  PGresult *res;
  if (i < 0 || i >= r->nstmts) return NULL;
  res = r->results[i];
  r->results[i] = NULL;
  return res;
}

mk_error *mk_req_error(mk_req *r) { return r->err.kind != MK_ERR_NONE ? &r->err : NULL; }

int mk_req_may_have_run(const mk_req *r) { return r->may_have_run; }

int mk_req_sent(const mk_req *r) { return r->sent; }

void mk_req_fail(mk_req *r, mk_kind kind, const char *msg) {
  mk_error_clear(&r->err);
  mk_error_set(&r->err, kind, msg);
}

int mk_req_txn_started(const mk_req *r) { return r->txn_started; }

unsigned mk_req_flags(const mk_req *r) { return r->flags; }

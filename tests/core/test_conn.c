/* test_conn.c: TAP tests of mk_conn against the throwaway server of scripts/test
 * (MOMOKO_TEST_DSN), on the real loop adapter. They pin what the Lua specs cannot
 * reach: libpq's own checks on a result (an out-of-range PQfname) call the notice
 * receiver copied into the result, also after the connection was released and freed
 * (run under ASan by scripts/test --sanitize: a freed receiver argument is a
 * use-after-free there, and a sink that is never freed a leak); and the length check
 * of mk_req_param. Prints one TAP line per check, then the plan; exits 1 if any
 * check failed. Without MOMOKO_TEST_DSN the server tests are skipped. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_conn.h"
#include "mk_req.h"

static int ntests, nfailed;

static void check(int ok, const char *desc) {
  ntests++;
  if (!ok) nfailed++;
  printf("%sok %d - %s\n", ok ? "" : "not ", ntests, desc);
}

static void skip(const char *desc) {
  ntests++;
  printf("ok %d - %s # SKIP no MOMOKO_TEST_DSN\n", ntests, desc);
}

typedef struct state {
  int connected, connect_failed, notices, done;
  char last_notice[256];
} state;

static void on_connected(mk_conn *c, const mk_error *err, void *ud) {
  state *s = ud;
  (void)c;
  if (err) {
    s->connect_failed = 1;
    printf("# connect failed: %s\n", mk_error_message(err));
  } else {
    s->connected = 1;
  }
}

static void on_notice(mk_conn *c, const char *msg, void *ud) {
  state *s = ud;
  (void)c;
  s->notices++;
  snprintf(s->last_notice, sizeof s->last_notice, "%s", msg);
}

static void on_done(mk_req *r, void *ud) {
  state *s = ud;
  (void)r;
  s->done++;
}

/* Runs the loop until *flag is set, at most about 10 s of loop turns. */
static int run_until(mk_loop *loop, const int *flag) {
  int i;
  for (i = 0; i < 100000 && !*flag; i++) mk_loop_run(loop, 1);
  return *flag;
}

/* A connected connection, its result of `SELECT 1 AS a`, or NULL. */
static PGresult *query_one(mk_loop *loop, mk_conn *c, state *s) {
  mk_req *r = mk_req_new(1, 0, 0, on_done, s);
  PGresult *res = NULL;
  if (!r || mk_req_stmt(r, 0, "SELECT 1 AS a", 13, -1) < 0 || mk_conn_submit(c, r) < 0) {
    mk_req_free(r);
    return NULL;
  }
  if (run_until(loop, &s->done) && !mk_req_error(r)) res = mk_req_take_result(r, 0);
  mk_req_free(r);
  return res;
}

static void test_notice_sink(const char *dsn) {
  static const mk_conn_hooks hooks = {on_connected, on_notice, NULL, NULL};
  mk_loop *loop = mk_loop_default();
  state s;
  mk_conn *c;
  PGresult *res;
  int i;
  memset(&s, 0, sizeof s);
  c = mk_conn_new(loop, &hooks, &s);
  check(c != NULL && mk_conn_connect(c, dsn, NULL, 0) == 0, "connect starts");
  check(run_until(loop, &s.connected) && !s.connect_failed, "connects");
  res = query_one(loop, c, &s);
  check(res != NULL && PQntuples(res) == 1, "SELECT 1 returns one row");
  if (!res) {
    mk_conn_release(c);
    return;
  }
  /* libpq's range check reports through the receiver copied into the result */
  check(PQfname(res, 5) == NULL, "PQfname out of range is NULL");
  check(s.notices == 1 && strstr(s.last_notice, "out of range") != NULL,
        "while the connection lives, its notice hook hears libpq's result check");
  mk_conn_release(c);
  for (i = 0; i < 5; i++) mk_loop_run(loop, 0); /* the close callbacks free the handles */
  /* the connection is freed: the receiver's argument must still be valid */
  check(PQfname(res, 7) == NULL && PQgetvalue(res, 3, 0) == NULL,
        "a result used out of range after its connection was freed (ASan: no use after free)");
  check(s.notices == 1, "a freed connection's hook is not called");
  PQclear(res); /* the last holder of the notice sink: freed here (LSan: no leak) */
  check(1, "the result is cleared after its connection");
}

static void test_param_length(void) {
  mk_req *r = mk_req_new(1, 0, 0, on_done, NULL);
  char small[4] = "abc";
  check(r != NULL && mk_req_stmt(r, 0, "SELECT $1", 9, 1) == 0, "a statement with one parameter");
  if (!r) return;
  /* the check comes before any copy: the pointer is never read for such a length */
  check(mk_req_param(r, 0, 0, small, (size_t)INT_MAX + 1, 0, 0) == -2, "a value of 2 GiB is refused with -2");
  check(mk_req_param(r, 0, 0, small, (size_t)-1, 1, 0) == -2, "a value of SIZE_MAX bytes is refused with -2");
  check(mk_req_param(r, 0, 0, small, 3, 0, 0) == 0, "a small value is taken");
  check(mk_req_param(r, 0, 0, NULL, (size_t)INT_MAX + 1, 0, 0) == 0, "NULL takes no length");
  mk_req_free(r);
}

/* Values up to MK_STMT_INLINE - 1 bytes live in the statement's block, longer ones in an
 * allocation of their own; replacing one by the other frees what it must (ASan and
 * valgrind see a leak or a double free). */
static void test_param_storage(void) {
  static const char text[] = "0123456789abcdefghijklmnopqrstuvwxyz0123456789";
  size_t fits = MK_STMT_INLINE - 1, longer = MK_STMT_INLINE;
  mk_req *r = mk_req_new(2, MK_REQ_TXN, 0, NULL, NULL);
  int ok;
  check(r != NULL && mk_req_stmt(r, 0, "SELECT $1, $2", 13, 2) == 0 && mk_req_stmt(r, 1, "SELECT 1", 8, -1) == 0,
        "a transaction of two statements");
  if (!r) return;
  ok = mk_req_param(r, 0, 0, text, fits, 0, 23) == 0 && mk_req_param(r, 0, 1, text, longer, 1, 25) == 0;
  ok = ok && r->stmts[0].lengths[0] == (int)fits && memcmp(r->stmts[0].values[0], text, fits) == 0 &&
       r->stmts[0].values[0][fits] == '\0';
  ok = ok && r->stmts[0].lengths[1] == (int)longer && memcmp(r->stmts[0].values[1], text, longer) == 0 &&
       r->stmts[0].formats[1] == 1 && r->stmts[0].types[0] == 23 && r->stmts[0].types[1] == 25;
  check(ok, "inline and allocated values keep their bytes, lengths, formats and types");
  ok = mk_req_param(r, 0, 0, text, sizeof text - 1, 0, 0) == 0 && mk_req_param(r, 0, 1, text, 2, 0, 0) == 0 &&
       mk_req_param(r, 0, 1, NULL, 0, 0, 0) == 0 && mk_req_param(r, 0, 0, text, 1, 0, 0) == 0;
  ok = ok && r->stmts[0].values[1] == NULL && r->stmts[0].values[0][0] == '0' && r->stmts[0].values[0][1] == '\0';
  check(ok, "a value replaced by a longer, a shorter or a NULL one");
  check(strcmp(mk_req_sql(r, 0), "SELECT $1, $2") == 0 && strcmp(mk_req_sql(r, 1), "SELECT 1") == 0,
        "each statement keeps its SQL");
  mk_req_free(r);
}

int main(void) {
  const char *dsn = getenv("MOMOKO_TEST_DSN");
  if (dsn && dsn[0]) {
    test_notice_sink(dsn);
  } else {
    for (int i = 0; i < 8; i++) skip("notice sink");
  }
  test_param_length();
  test_param_storage();
  printf("1..%d\n", ntests);
  return nfailed ? 1 : 0;
}

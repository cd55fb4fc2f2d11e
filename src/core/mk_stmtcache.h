/* mk_stmtcache: one connection's statement cache. It remembers the parametrized
 * statements (SQL text plus parameter types) run on the connection, most recently used
 * first, at most `capacity` of them. A statement seen for the second time is given a
 * number, under which the connection prepares it on the server (as "mk_<number>") and
 * runs it from then on. Pushing out an entry that has a number hands the number back,
 * for the connection to DEALLOCATE. Pure bookkeeping: no libpq calls, no I/O. */
#ifndef MK_STMTCACHE_H
#define MK_STMTCACHE_H

#include <libpq-fe.h>

typedef struct mk_stmtcache mk_stmtcache;

/* A cache of at most capacity (>= 1) entries. NULL when memory ran out. The caller
 * owns it and frees it with mk_stmtcache_free. */
mk_stmtcache *mk_stmtcache_new(int capacity);
void mk_stmtcache_free(mk_stmtcache *sc);

/* What to do with one run of a statement (mk_stmtcache_use). */
typedef struct mk_stmtcache_use_t {
  unsigned id;      /* the prepared statement's number; 0: run it unnamed */
  int prepare;      /* 1: prepare it as id first (its second run) */
  unsigned evicted; /* a prepared entry pushed out to make room: DEALLOCATE it; 0: none */
} mk_stmtcache_use_t;

/* Records one run of (sql, nparams, types) and says how to send it. types are copied
 * (nparams of them; NULL when nparams is 0). Returns 0, or -1 when memory ran out
 * (*u then says: run it unnamed, nothing evicted). */
int mk_stmtcache_use(mk_stmtcache *sc, const char *sql, int nparams, const Oid *types,
                     mk_stmtcache_use_t *u);
/* Forgets the entry prepared as id (its prepare failed, or the server dropped or
 * invalidated it). Returns 1 if there was one, 0 otherwise. */
int mk_stmtcache_forget(mk_stmtcache *sc, unsigned id);
/* Records that the server prepared the entry id (its PREPARE succeeded). */
void mk_stmtcache_confirm(mk_stmtcache *sc, unsigned id);
/* 1 if there is an entry id and the server prepared it. */
int mk_stmtcache_confirmed(const mk_stmtcache *sc, unsigned id);
/* Number of entries. */
int mk_stmtcache_count(const mk_stmtcache *sc);

#endif

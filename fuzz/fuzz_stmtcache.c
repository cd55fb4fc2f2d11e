/* fuzz_stmtcache.c: mk_stmtcache driven by a stream of operations against a simple
 * oracle (an array in recency order, searched linearly). The first byte picks the
 * capacity (1..8); then each operation is a use of one of a few keys (SQL texts that
 * are prefixes of each other or hash alike, 0..3 parameter types out of a few OIDs) or
 * a forget of an id (one the oracle knows, 0, or one never given out).
 * Invariants, after every operation:
 *  - a use says what the oracle says: a new key runs unnamed (id 0, no prepare); its
 *    second run prepares it under a fresh id (never 0, never given out before); later
 *    runs name that id; the (capacity+1)-th distinct key pushes out the least recently
 *    used entry, handing back its id (0 if it was never prepared);
 *  - forget answers 1 exactly for an id the oracle holds, and removes that entry;
 *  - the count equals the oracle's, never above the capacity.
 * The SQL and the types are passed in exact-size buffers freed right after each call, so
 * a cache that kept the caller's pointers would be caught by AddressSanitizer. */
#include "fuzz_util.h"

#include "mk_stmtcache.h"

#define MAXCAP 8
#define MAXPARAMS 3

static const char *const sqls[] = {"SELECT $1", "SELECT $1 ", "SELECT $", "", "SELECT $2", "b", "a"};
static const Oid oids[] = {0, 23, 25, 20};

typedef struct key {
  int sql;
  int nparams;
  Oid types[MAXPARAMS];
} key;

typedef struct oentry {
  key k;
  unsigned id;
} oentry;

typedef struct oracle {
  oentry e[MAXCAP]; /* e[0] is the most recent */
  int count, capacity;
  unsigned next_id;
} oracle;

static int key_eq(const key *a, const key *b) {
  return a->sql == b->sql && a->nparams == b->nparams &&
         memcmp(a->types, b->types, (size_t)a->nparams * sizeof *a->types) == 0;
}

/* Moves e[i] to the front. */
static void to_front(oracle *o, int i) {
  oentry x = o->e[i];
  memmove(&o->e[1], &o->e[0], (size_t)i * sizeof *o->e);
  o->e[0] = x;
}

static mk_stmtcache_use_t oracle_use(oracle *o, const key *k) {
  mk_stmtcache_use_t u;
  int i;
  memset(&u, 0, sizeof u);
  for (i = 0; i < o->count; i++) {
    if (key_eq(&o->e[i].k, k)) {
      to_front(o, i);
      if (o->e[0].id == 0) {
        o->e[0].id = ++o->next_id;
        u.prepare = 1;
      }
      u.id = o->e[0].id;
      return u;
    }
  }
  if (o->count == o->capacity) u.evicted = o->e[--o->count].id;
  memmove(&o->e[1], &o->e[0], (size_t)o->count * sizeof *o->e);
  o->e[0].k = *k;
  o->e[0].id = 0;
  o->count++;
  return u;
}

static int oracle_forget(oracle *o, unsigned id) {
  int i;
  if (id == 0) return 0;
  for (i = 0; i < o->count; i++) {
    if (o->e[i].id == id) {
      memmove(&o->e[i], &o->e[i + 1], (size_t)(o->count - i - 1) * sizeof *o->e);
      o->count--;
      return 1;
    }
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_reader rd = {data, size};
  oracle o;
  mk_stmtcache *sc;
  int ops = 0;

  memset(&o, 0, sizeof o);
  o.capacity = 1 + (int)(fuzz_byte(&rd) % MAXCAP);
  sc = mk_stmtcache_new(o.capacity);
  FUZZ_CHECK(sc != NULL);
  while (rd.n > 0 && ops++ < 4096) {
    unsigned op = fuzz_byte(&rd);
    if (op % 4 != 3) {
      key k;
      size_t len;
      char *sql;
      Oid *types = NULL;
      mk_stmtcache_use_t u, want;
      int i;
      memset(&k, 0, sizeof k);
      k.sql = (int)((op >> 2) % (sizeof sqls / sizeof *sqls));
      k.nparams = (int)(fuzz_byte(&rd) % (MAXPARAMS + 1));
      for (i = 0; i < k.nparams; i++) k.types[i] = oids[fuzz_byte(&rd) % (sizeof oids / sizeof *oids)];
      len = strlen(sqls[k.sql]);
      sql = fuzz_copy(sqls[k.sql], len + 1);
      if (k.nparams > 0) types = (Oid *)(void *)fuzz_copy(k.types, (size_t)k.nparams * sizeof *types);
      memset(&u, 0xa5, sizeof u);
      FUZZ_CHECK(mk_stmtcache_use(sc, sql, k.nparams, types, &u) == 0);
      free(sql);
      free(types);
      want = oracle_use(&o, &k);
      FUZZ_CHECK(u.id == want.id);
      FUZZ_CHECK(u.prepare == want.prepare);
      FUZZ_CHECK(u.evicted == want.evicted);
      FUZZ_CHECK(!u.prepare || u.id != 0);
    } else {
      unsigned pick = fuzz_byte(&rd), id;
      if (pick % 4 == 0)
        id = 0;
      else if (pick % 4 == 1)
        id = o.next_id + 1 + pick; /* never given out */
      else
        id = o.count ? o.e[pick % (unsigned)o.count].id : pick; /* often a held one */
      FUZZ_CHECK(mk_stmtcache_forget(sc, id) == oracle_forget(&o, id));
    }
    FUZZ_CHECK(mk_stmtcache_count(sc) == o.count);
    FUZZ_CHECK(o.count <= o.capacity);
  }
  mk_stmtcache_free(sc);
  return 0;
}

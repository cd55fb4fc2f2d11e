/* fuzz_stmtcache.c: mk_stmtcache driven by a stream of operations against a reference
 * model (an array in recency order, searched linearly). The first byte picks the
 * capacity (1..8, or up to 20 so that the table has more buckets); then each operation
 * is one of:
 *  - use of a key: SQL text from a table of near-misses (prefixes of each other, a
 *    trailing space, high bytes) or up to 12 bytes of the input, which may hold a NUL
 *    (the key is then the text before it, as strlen sees it, and the bytes after it are
 *    different on every call), with 0..3 parameter types from a few OIDs or any OID;
 *  - use of one of two keys whose hashes collide: same SQL and two parameter types,
 *    chosen with FNV-1a as mk_stmtcache.c documents it so that the full hash is the
 *    same (if the hash ever changes they are merely two distinct keys);
 *  - forget of an id (one the model holds, 0, or one never given out);
 *  - confirm of an id (held or not);
 *  - clear: the cache freed and a new one made (what a reconnect does).
 * Invariants, after every operation:
 *  - a use says what the model says: a new key runs unnamed (id 0, no prepare); its
 *    second run prepares it under a fresh id (never 0, never given out before by this
 *    cache); later runs name that id; the (capacity+1)-th distinct key pushes out the
 *    least recently used entry, handing back its id (0 if it was never prepared);
 *  - forget answers 1 exactly for an id the model holds, and removes that entry;
 *  - confirmed is 1 exactly for the held ids confirmed since they were given out (one
 *    entry checked after each operation, every entry at the end; never for 0 or for an
 *    id not given out);
 *  - the count equals the model's, never above the capacity.
 * The SQL and the types are passed in exact-size buffers freed right after each call, so
 * a cache that kept the caller's pointers would be caught by AddressSanitizer. */
#include "fuzz_util.h"

#include "mk_stmtcache.h"

#define MAXCAP 20
#define MAXPARAMS 3
#define MAXSQL 12

static const char *const sqls[] = {"SELECT $1", "SELECT $1 ", "SELECT $", "", "SELECT $2",
                                   "b", "a", "\xc3\xa9", "\xc3\xa9\xff"};
static const Oid oids[] = {0, 23, 25, 20, 0xffffffffu};

typedef struct key {
  char sql[MAXSQL + 1];
  size_t len;
  int nparams;
  Oid types[MAXPARAMS];
} key;

typedef struct mentry {
  key k;
  unsigned id;
  int confirmed;
} mentry;

typedef struct model {
  mentry e[MAXCAP]; /* e[0] is the most recent */
  int count, capacity;
  unsigned next_id;
} model;

static int key_eq(const key *a, const key *b) {
  return a->len == b->len && memcmp(a->sql, b->sql, a->len) == 0 && a->nparams == b->nparams &&
         memcmp(a->types, b->types, (size_t)a->nparams * sizeof *a->types) == 0;
}

/* Moves e[i] to the front. */
static void to_front(model *m, int i) {
  mentry x = m->e[i];
  memmove(&m->e[1], &m->e[0], (size_t)i * sizeof *m->e);
  m->e[0] = x;
}

static mk_stmtcache_use_t model_use(model *m, const key *k) {
  mk_stmtcache_use_t u;
  int i;
  memset(&u, 0, sizeof u);
  for (i = 0; i < m->count; i++) {
    if (key_eq(&m->e[i].k, k)) {
      to_front(m, i);
      if (m->e[0].id == 0) {
        m->e[0].id = ++m->next_id;
        u.prepare = 1;
      }
      u.id = m->e[0].id;
      return u;
    }
  }
  if (m->count == m->capacity) u.evicted = m->e[--m->count].id;
  memmove(&m->e[1], &m->e[0], (size_t)m->count * sizeof *m->e);
  memset(&m->e[0], 0, sizeof m->e[0]);
  m->e[0].k = *k;
  m->count++;
  return u;
}

static mentry *model_find(model *m, unsigned id) {
  int i;
  if (id == 0) return NULL;
  for (i = 0; i < m->count; i++)
    if (m->e[i].id == id) return &m->e[i];
  return NULL;
}

static int model_forget(model *m, unsigned id) {
  mentry *e = model_find(m, id);
  if (!e) return 0;
  memmove(e, e + 1, (size_t)(m->e + m->count - e - 1) * sizeof *m->e);
  m->count--;
  return 1;
}

/* FNV-1a over bytes, then over the types, as mk_stmtcache.c's key_hash (without its final
 * "^ nparams", the same for both keys of a collision). */
static size_t fnv_step(size_t h, size_t x) { return (h ^ x) * (size_t)16777619u; }

/* Makes b collide with a: same SQL, two types, same full hash. 0 when this SQL and
 * first type give no collision of that form (a carry crossed bit 32). */
static int colliding_pair(key *a, key *b, Oid t1, Oid t2) {
  size_t h = (size_t)2166136261u, x, y, i;
  for (i = 0; i < a->len; i++) h = fnv_step(h, (unsigned char)a->sql[i]);
  x = fnv_step(h, t1);
  y = fnv_step(h, t1 ^ 1u);
  if (((x ^ y) >> 31 >> 1) != 0) return 0;
  *b = *a;
  a->nparams = b->nparams = 2;
  a->types[0] = t1;
  a->types[1] = t2;
  b->types[0] = t1 ^ 1u;
  b->types[1] = (Oid)(t2 ^ (x ^ y));
  FUZZ_CHECK(fnv_step(x, a->types[1]) == fnv_step(y, b->types[1]));
  return 1;
}

/* Runs one use of k through the cache, from exact-size copies, and checks it. */
static void use(mk_stmtcache *sc, model *m, const key *k, const uint8_t *junk, size_t njunk) {
  mk_stmtcache_use_t u, want;
  /* the SQL, its NUL, then bytes that are not part of the key */
  char *sql = fuzz_alloc(k->len + 1 + njunk);
  Oid *types = NULL;
  memcpy(sql, k->sql, k->len);
  sql[k->len] = '\0';
  if (njunk) memcpy(sql + k->len + 1, junk, njunk);
  if (k->nparams > 0) types = (Oid *)(void *)fuzz_copy(k->types, (size_t)k->nparams * sizeof *types);
  memset(&u, 0xa5, sizeof u);
  FUZZ_CHECK(mk_stmtcache_use(sc, sql, k->nparams, types, &u) == 0);
  free(sql);
  free(types);
  want = model_use(m, k);
  FUZZ_CHECK(u.id == want.id);
  FUZZ_CHECK(u.prepare == want.prepare);
  FUZZ_CHECK(u.evicted == want.evicted);
  FUZZ_CHECK(!u.prepare || u.id != 0);
}

/* An id to forget or confirm: 0, one never given out, or often a held one. */
static unsigned pick_id(const model *m, unsigned pick) {
  if (pick % 4 == 0) return 0;
  if (pick % 4 == 1) return m->next_id + 1 + pick;
  return m->count ? m->e[pick % (unsigned)m->count].id : pick;
}

/* The cache's confirmed state of e's id is the model's (an entry without an id has none). */
static void check_confirmed(const mk_stmtcache *sc, const mentry *e) {
  FUZZ_CHECK(e->id == 0 || mk_stmtcache_confirmed(sc, e->id) == e->confirmed);
}

static int pick_capacity(fuzz_reader *rd) {
  unsigned c = fuzz_byte(rd);
  return c & 0x80 ? 1 + (int)(c % MAXCAP) : 1 + (int)(c % 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_reader rd = {data, size};
  model m;
  mk_stmtcache *sc;
  int ops = 0, i;

  memset(&m, 0, sizeof m);
  m.capacity = pick_capacity(&rd);
  sc = mk_stmtcache_new(m.capacity);
  FUZZ_CHECK(sc != NULL);
  while (rd.n > 0 && ops++ < 4096) {
    unsigned op = fuzz_byte(&rd);
    switch (op % 8) {
    case 0: case 1: case 2: case 3: { /* a use */
      key k;
      size_t njunk = 0;
      const uint8_t *junk = NULL;
      memset(&k, 0, sizeof k);
      if (op & 0x80) { /* SQL from the input, up to a NUL */
        size_t n = ((op >> 3) & 0x0f) % (MAXSQL + 1), j;
        if (n > rd.n) n = rd.n;
        for (j = 0; j < n && rd.p[j] != 0; j++) k.sql[j] = (char)rd.p[j];
        k.len = j;
        if (j < n) { /* the bytes after the NUL go along, not part of the key */
          junk = rd.p + j + 1;
          njunk = n - j - 1;
        }
        rd.p += n;
        rd.n -= n;
      } else {
        const char *s = sqls[((op >> 3) & 0x0f) % (sizeof sqls / sizeof *sqls)];
        k.len = strlen(s);
        memcpy(k.sql, s, k.len);
      }
      k.nparams = (int)(fuzz_byte(&rd) % (MAXPARAMS + 1));
      for (i = 0; i < k.nparams; i++) {
        unsigned t = fuzz_byte(&rd);
        k.types[i] = t < 0xf0 ? oids[t % (sizeof oids / sizeof *oids)] : (Oid)fuzz_u64(&rd);
      }
      use(sc, &m, &k, junk, njunk);
      break;
    }
    case 4: { /* one of two keys of the same hash */
      key a, b;
      const char *s = sqls[((op >> 3) & 0x0f) % (sizeof sqls / sizeof *sqls)];
      Oid t1 = oids[fuzz_byte(&rd) % (sizeof oids / sizeof *oids)], t2 = (Oid)fuzz_byte(&rd);
      memset(&a, 0, sizeof a);
      a.len = strlen(s);
      memcpy(a.sql, s, a.len);
      if (colliding_pair(&a, &b, t1, t2)) use(sc, &m, (op & 0x80) ? &b : &a, NULL, 0);
      break;
    }
    case 5: {
      unsigned id = pick_id(&m, fuzz_byte(&rd));
      FUZZ_CHECK(mk_stmtcache_forget(sc, id) == model_forget(&m, id));
      break;
    }
    case 6: {
      unsigned id = pick_id(&m, fuzz_byte(&rd));
      mentry *e = model_find(&m, id);
      mk_stmtcache_confirm(sc, id);
      if (e) e->confirmed = 1;
      break;
    }
    default: /* clear: a new cache, as after a reconnect */
      mk_stmtcache_free(sc);
      memset(&m, 0, sizeof m);
      m.capacity = pick_capacity(&rd);
      sc = mk_stmtcache_new(m.capacity);
      FUZZ_CHECK(sc != NULL);
      break;
    }
    FUZZ_CHECK(mk_stmtcache_count(sc) == m.count);
    FUZZ_CHECK(m.count <= m.capacity);
    /* one entry's confirmed state per operation (all of them at the end): checking
     * every entry each time would make a run quadratic in the capacity */
    if (m.count > 0) check_confirmed(sc, &m.e[op % (unsigned)m.count]);
  }
  for (i = 0; i < m.count; i++) check_confirmed(sc, &m.e[i]);
  FUZZ_CHECK(!mk_stmtcache_confirmed(sc, 0) && !mk_stmtcache_confirmed(sc, m.next_id + 1));
  mk_stmtcache_free(sc);
  return 0;
}

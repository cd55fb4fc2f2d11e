/* mk_stmtcache: the LRU of statements (see mk_stmtcache.h): a chained hash table over
 * a doubly linked recency list. */
#include "mk_stmtcache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
  struct entry *prev, *next; /* recency: head is the most recent */
  struct entry *chain;       /* hash bucket */
  size_t hash;
  char *sql;
  size_t sqllen;
  int nparams;
  Oid *types;
  unsigned id; /* 0 until its second run */
  int confirmed; /* the server answered its PREPARE */
} entry;

struct mk_stmtcache {
  int capacity, count;
  entry *head, *tail;
  entry **buckets;
  size_t nbuckets; /* a power of two, at least twice the capacity */
  unsigned next_id;
};

mk_stmtcache *mk_stmtcache_new(int capacity) {
  mk_stmtcache *sc;
  size_t n = 16;
  if (capacity < 1) return NULL;
  while (n < (size_t)capacity * 2) n *= 2;
  sc = calloc(1, sizeof *sc);
  if (!sc) return NULL;
  sc->buckets = calloc(n, sizeof *sc->buckets);
  if (!sc->buckets) {
    free(sc);
    return NULL;
  }
  sc->nbuckets = n;
  sc->capacity = capacity;
  return sc;
}

static void entry_free(entry *e) {
  free(e->sql);
  free(e->types);
  free(e);
}

void mk_stmtcache_free(mk_stmtcache *sc) {
  entry *e, *next;
  if (!sc) return;
  for (e = sc->head; e; e = next) {
    next = e->next;
    entry_free(e);
  }
  free(sc->buckets);
  free(sc);
}

/* FNV-1a over the SQL, then the parameter types. */
static size_t key_hash(const char *sql, size_t len, int nparams, const Oid *types) {
  size_t h = (size_t)2166136261u, i;
  for (i = 0; i < len; i++) {
    h ^= (unsigned char)sql[i];
    h *= (size_t)16777619u;
  }
  for (i = 0; i < (size_t)nparams; i++) {
    h ^= (size_t)types[i];
    h *= (size_t)16777619u;
  }
  return h ^ (size_t)nparams;
}

static void unlink_lru(mk_stmtcache *sc, entry *e) {
  if (e->prev) e->prev->next = e->next; else sc->head = e->next;
  if (e->next) e->next->prev = e->prev; else sc->tail = e->prev;
  e->prev = e->next = NULL;
}

static void push_front(mk_stmtcache *sc, entry *e) {
  e->prev = NULL;
  e->next = sc->head;
  if (sc->head) sc->head->prev = e; else sc->tail = e;
  sc->head = e;
}

/* Takes e out of the cache and frees it. */
static void remove_entry(mk_stmtcache *sc, entry *e) {
  entry **p = &sc->buckets[e->hash & (sc->nbuckets - 1)];
  while (*p != e) p = &(*p)->chain;
  *p = e->chain;
  unlink_lru(sc, e);
  sc->count--;
  entry_free(e);
}

int mk_stmtcache_use(mk_stmtcache *sc, const char *sql, int nparams, const Oid *types,
                     mk_stmtcache_use_t *u) {
  size_t len = strlen(sql), h = key_hash(sql, len, nparams, types);
  entry *e, **bucket = &sc->buckets[h & (sc->nbuckets - 1)];
  size_t tbytes = (size_t)nparams * sizeof *types;
  memset(u, 0, sizeof *u);
  for (e = *bucket; e; e = e->chain) {
    if (e->hash == h && e->sqllen == len && e->nparams == nparams && memcmp(e->sql, sql, len) == 0 &&
        (tbytes == 0 || memcmp(e->types, types, tbytes) == 0))
      break;
  }
  if (e) {
    if (sc->head != e) {
      unlink_lru(sc, e);
      push_front(sc, e);
    }
    if (e->id == 0) {
      if (++sc->next_id == 0) sc->next_id = 1; /* after 2^32 prepares: wrap, skip 0 */
      e->id = sc->next_id;
      u->prepare = 1;
    }
    u->id = e->id;
    return 0;
  }
  e = calloc(1, sizeof *e);
  if (!e) return -1;
  e->sql = malloc(len + 1);
  e->types = tbytes ? malloc(tbytes) : NULL;
  if (!e->sql || (tbytes && !e->types)) {
    entry_free(e);
    return -1;
  }
  memcpy(e->sql, sql, len + 1);
  if (tbytes) memcpy(e->types, types, tbytes);
  e->sqllen = len;
  e->nparams = nparams;
  e->hash = h;
  if (sc->count >= sc->capacity) {
    u->evicted = sc->tail->id;
    remove_entry(sc, sc->tail);
  }
  e->chain = *bucket;
  *bucket = e;
  push_front(sc, e);
  sc->count++;
  return 0;
}

int mk_stmtcache_forget(mk_stmtcache *sc, unsigned id) {
  entry *e;
  if (id == 0) return 0;
  for (e = sc->head; e; e = e->next) {
    if (e->id == id) {
      remove_entry(sc, e);
      return 1;
    }
  }
  return 0;
}

static entry *find_id(const mk_stmtcache *sc, unsigned id) {
  entry *e;
  if (id == 0) return NULL;
  for (e = sc->head; e; e = e->next)
    if (e->id == id) return e;
  return NULL;
}

void mk_stmtcache_confirm(mk_stmtcache *sc, unsigned id) {
  entry *e = find_id(sc, id);
  if (e) e->confirmed = 1;
}

int mk_stmtcache_confirmed(const mk_stmtcache *sc, unsigned id) {
  const entry *e = find_id(sc, id);
  return e && e->confirmed;
}

int mk_stmtcache_count(const mk_stmtcache *sc) { return sc->count; }

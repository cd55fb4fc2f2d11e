/* fuzz_hstore.c: mk_hstore_parse on arbitrary input.
 * Invariants:
 *  - the result is 0 or MK_TEXT_EPARSE (the callback returns 0);
 *  - keys and values lie within the scratch area at increasing fresh offsets, their
 *    total at most the input's length;
 *  - stopping at the k-th pair returns the callback's value after exactly k pairs;
 *  - round trip: the pairs reported (also those before a parse error) re-encoded as
 *    momoko.hstore does ("k"=>"v" or "k"=>NULL via mk_text_quote, joined by ", ")
 *    parse back to exactly the same pairs. */
#include "fuzz_util.h"

#include "mk_buf.h"
#include "mk_text.h"

#define STOP_RC 4321

typedef struct hs_state {
  const char *scratch, *next_scratch;
  size_t n, total;
  long pairs, stop_at;
  mk_buf events; /* per pair: klen, key, then 'N' or 'S' + vlen + value */
  mk_buf canon;
} hs_state;

static void add(mk_buf *b, const void *s, size_t n) {
  FUZZ_CHECK(mk_buf_add(b, s, n) == 0);
}

/* A string handed to the callback must sit in scratch after the previous ones. */
static void check_str(hs_state *st, const char *s, size_t len) {
  if (len > 0) {
    FUZZ_CHECK(s != NULL && fuzz_within(s, len, st->scratch, st->n));
    FUZZ_CHECK(s >= st->next_scratch);
    st->next_scratch = s + len;
  }
  st->total += len;
  FUZZ_CHECK(st->total <= st->n);
}

static int on_pair(void *ud, const char *k, size_t klen, const char *v, size_t vlen,
                   int val_null) {
  hs_state *st = ud;

  check_str(st, k, klen);
  if (!val_null)
    check_str(st, v, vlen);
  add(&st->events, &klen, sizeof klen);
  add(&st->events, k, klen);
  if (st->pairs > 0)
    add(&st->canon, ", ", 2);
  FUZZ_CHECK(mk_text_quote(&st->canon, k, klen) == 0);
  add(&st->canon, "=>", 2);
  if (val_null) {
    add(&st->events, "N", 1);
    add(&st->canon, "NULL", 4);
  } else {
    add(&st->events, "S", 1);
    add(&st->events, &vlen, sizeof vlen);
    add(&st->events, v, vlen);
    FUZZ_CHECK(mk_text_quote(&st->canon, v, vlen) == 0);
  }
  return ++st->pairs == st->stop_at ? STOP_RC : 0;
}

static int parse(const char *text, size_t n, long stop_at, hs_state *st) {
  char *scratch = fuzz_alloc(n);
  int rc;

  memset(st, 0, sizeof *st);
  st->scratch = st->next_scratch = scratch;
  st->n = n;
  st->stop_at = stop_at;
  mk_buf_init(&st->events);
  mk_buf_init(&st->canon);
  rc = mk_hstore_parse(text, n, scratch, on_pair, st);
  free(scratch);
  return rc;
}

static void state_free(hs_state *st) {
  mk_buf_free(&st->events);
  mk_buf_free(&st->canon);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_copy(data, size);
  hs_state st, again;
  int rc = parse(text, size, 0, &st);

  FUZZ_CHECK(rc == 0 || rc == MK_TEXT_EPARSE);

  if (st.pairs > 0) {
    long k = (long)(fuzz_hash(data, size) % (uint32_t)st.pairs) + 1;
    int rc2 = parse(text, size, k, &again);
    FUZZ_CHECK(rc2 == STOP_RC && again.pairs == k);
    FUZZ_CHECK(again.events.len > 0 && again.events.len <= st.events.len &&
               memcmp(again.events.data, st.events.data, again.events.len) == 0);
    state_free(&again);

    /* Round trip of every pair seen, even when the input failed later on. */
    {
      char *canon = fuzz_copy(st.canon.data, st.canon.len);
      int rc3 = parse(canon, st.canon.len, 0, &again);
      if (rc3 != 0 || again.pairs != st.pairs || again.events.len != st.events.len ||
          memcmp(again.events.data, st.events.data, st.events.len) != 0) {
        fprintf(stderr, "re-encoded hstore (%zu bytes, %ld pairs) did not round-trip, rc %d\n",
                st.canon.len, st.pairs, rc3);
        abort();
      }
      state_free(&again);
      free(canon);
    }
  }
  state_free(&st);
  free(text);
  return 0;
}

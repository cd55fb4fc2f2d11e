/* fuzz_array.c: mk_array_parse on arbitrary input with several delimiters.
 * Each input is parsed with ',' and ';' and, minus its first byte, with that byte as
 * the delimiter. Invariants checked through the sink:
 *  - the result is 0 or MK_TEXT_EPARSE (the callbacks return 0);
 *  - open/close are balanced, depth stays within 1..MK_TEXT_MAXDEPTH, there is one
 *    top-level array and nothing is reported after it closes; on success depth is 0;
 *  - no (sub)array holds both elements and sub-arrays;
 *  - every non-null element lies within the scratch area (or the input), strings in
 *    scratch come at increasing fresh offsets, and their total is at most the input;
 *  - a delimiter the parser must refuse gives MK_TEXT_EPARSE with no callback;
 *  - stopping at the k-th callback returns that callback's value after exactly k calls;
 *  - on success, a canonical literal rebuilt from the callbacks (every element quoted
 *    with mk_text_quote, NULL unquoted) parses back to the same events. */
#include "fuzz_util.h"

#include "mk_buf.h"
#include "mk_text.h"

#define STOP_RC 1234

typedef struct arr_state {
  const char *in, *scratch;
  size_t n;
  char delim;
  int depth, done, bad_rc;
  int holds[MK_TEXT_MAXDEPTH + 2]; /* 0 nothing, 1 elements, 2 sub-arrays */
  int first[MK_TEXT_MAXDEPTH + 2]; /* nothing emitted yet at this depth (canonical) */
  const char *next_scratch;
  size_t total;
  long calls, stop_at;
  mk_buf events; /* 'O', 'C', 'N', or 'S' + length + bytes */
  mk_buf canon;  /* the literal rebuilt from the events */
} arr_state;

static void add(mk_buf *b, const void *s, size_t n) {
  FUZZ_CHECK(mk_buf_add(b, s, n) == 0);
}

/* Counts a callback; returns STOP_RC at the stop position. */
static int counted(arr_state *st) {
  return ++st->calls == st->stop_at ? STOP_RC : 0;
}

static void canon_sep(arr_state *st) {
  if (st->depth > 0) {
    if (!st->first[st->depth])
      add(&st->canon, &st->delim, 1);
    st->first[st->depth] = 0;
  }
}

static int on_open(void *ud) {
  arr_state *st = ud;
  FUZZ_CHECK(!st->done);
  if (st->depth > 0) {
    FUZZ_CHECK(st->holds[st->depth] != 1);
    st->holds[st->depth] = 2;
  }
  canon_sep(st);
  st->depth++;
  FUZZ_CHECK(st->depth <= MK_TEXT_MAXDEPTH);
  st->holds[st->depth] = 0;
  st->first[st->depth] = 1;
  add(&st->events, "O", 1);
  add(&st->canon, "{", 1);
  return counted(st);
}

static int on_close(void *ud) {
  arr_state *st = ud;
  FUZZ_CHECK(!st->done && st->depth > 0);
  st->depth--;
  if (st->depth == 0)
    st->done = 1;
  add(&st->events, "C", 1);
  add(&st->canon, "}", 1);
  return counted(st);
}

static int on_elem(void *ud, const char *s, size_t len, int is_null) {
  arr_state *st = ud;
  FUZZ_CHECK(!st->done && st->depth > 0);
  FUZZ_CHECK(st->holds[st->depth] != 2);
  st->holds[st->depth] = 1;
  canon_sep(st);
  if (is_null) {
    add(&st->events, "N", 1);
    add(&st->canon, "NULL", 4);
  } else {
    if (len > 0) {
      FUZZ_CHECK(s != NULL);
      if (fuzz_within(s, len, st->scratch, st->n)) {
        FUZZ_CHECK(s >= st->next_scratch); /* fresh offset: earlier strings intact */
        st->next_scratch = s + len;
      } else {
        FUZZ_CHECK(fuzz_within(s, len, st->in, st->n));
      }
    }
    st->total += len;
    FUZZ_CHECK(st->total <= st->n);
    add(&st->events, "S", 1);
    add(&st->events, &len, sizeof len);
    add(&st->events, s, len);
    FUZZ_CHECK(mk_text_quote(&st->canon, s, len) == 0);
  }
  return counted(st);
}

static void state_init(arr_state *st, const char *in, const char *scratch, size_t n,
                       char delim, long stop_at) {
  memset(st, 0, sizeof *st);
  st->in = in;
  st->scratch = st->next_scratch = scratch;
  st->n = n;
  st->delim = delim;
  st->stop_at = stop_at;
  mk_buf_init(&st->events);
  mk_buf_init(&st->canon);
}

static void state_free(arr_state *st) {
  mk_buf_free(&st->events);
  mk_buf_free(&st->canon);
}

static int parse(const char *text, size_t n, char delim, long stop_at, arr_state *st) {
  char *scratch = fuzz_alloc(n);
  mk_array_sink sink = {on_open, on_close, on_elem, NULL};
  int rc;

  state_init(st, text, scratch, n, delim, stop_at);
  sink.ud = st;
  rc = mk_array_parse(text, n, delim, scratch, &sink);
  free(scratch);
  return rc;
}

static int refused_delim(char d) {
  return d == '{' || d == '}' || d == '"' || d == '\\' || d == ' ' || d == '\t' ||
         d == '\n' || d == '\r' || d == '\v' || d == '\f';
}

static void run(const uint8_t *data, size_t size, char delim) {
  char *text = fuzz_copy(data, size);
  arr_state st, again;
  int rc = parse(text, size, delim, 0, &st);

  FUZZ_CHECK(rc == 0 || rc == MK_TEXT_EPARSE);
  if (refused_delim(delim))
    FUZZ_CHECK(rc == MK_TEXT_EPARSE && st.calls == 0);
  if (rc == 0)
    FUZZ_CHECK(st.done && st.depth == 0 && st.calls >= 2);

  /* Stopping early: the k-th callback's value comes back after exactly k calls. */
  if (st.calls > 0) {
    long k = (long)(fuzz_hash(data, size) % (uint32_t)st.calls) + 1;
    int rc2 = parse(text, size, delim, k, &again);
    FUZZ_CHECK(rc2 == STOP_RC && again.calls == k);
    FUZZ_CHECK(again.events.len > 0 && again.events.len <= st.events.len &&
               memcmp(again.events.data, st.events.data, again.events.len) == 0);
    state_free(&again);
  }

  /* Canonical round trip, unless the delimiter is a letter of NULL (then an unquoted
   * NULL cannot be written). */
  if (rc == 0 && memchr("NnUuLl", delim, 6) == NULL) {
    char *canon = fuzz_copy(st.canon.data, st.canon.len);
    int rc3 = parse(canon, st.canon.len, delim, 0, &again);
    if (rc3 != 0 || again.events.len != st.events.len || st.events.len == 0 ||
        memcmp(again.events.data, st.events.data, st.events.len) != 0) {
      fprintf(stderr, "canonical literal (%zu bytes) did not round-trip, rc %d\n",
              st.canon.len, rc3);
      abort();
    }
    state_free(&again);
    free(canon);
  }
  state_free(&st);
  free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  run(data, size, ',');
  run(data, size, ';');
  if (size > 0)
    run(data + 1, size - 1, (char)data[0]);
  return 0;
}

/* fuzz_encode.c: the core's array writer (mk_array_writer, the one lparams.c sends
 * array parameters with) against the array parser (mk_array_parse).
 * The fuzz data drives the building of a nested structure through the writer: arrays of
 * sub-arrays or of elements (NULL, booleans, integers, floats, bytea, and strings rich
 * in quotes, backslashes, braces, delimiters, blanks and words like NULL), with ',' or
 * ';' as the delimiter. What the writer accepted, the parser must read back as the same
 * structure, element by element, judged by meaning rather than spelling: an integer's
 * text reads back (strtoll) as the same value, a float's (strtod, or NaN/Infinity as
 * float8in spells them) as the same bits, a bytea's (mk_bytea_decode) as the same bytes,
 * a string as the same bytes, and no string as NULL. Mistakes the writer must refuse
 * are generated too: a level mixing elements and sub-arrays (MK_TEXT_EMIXED), nesting
 * deeper than MK_TEXT_MAXDEPTH (MK_TEXT_EDEPTH), a string with a NUL byte
 * (MK_TEXT_ENUL), and anything after the outermost close (MK_TEXT_ESTATE). */
#include "fuzz_util.h"

#include <errno.h>
#include <math.h>

#include "mk_buf.h"
#include "mk_text.h"

/* Bytes the literal syntax cares about; string bytes below 0x20 map onto them. */
static const char special[] = "\"\\{},; \t\n\r=>[]:NULLnull$'\\\"{}";

/* Expected events: 'O' open, 'C' close, 'N' NULL, 'S' + length + bytes (strings and
 * booleans' text), 'I' + int64, 'D' + double, 'B' + length + raw bytes. */
typedef struct gen {
  fuzz_reader r;
  mk_buf lit; /* the literal the writer writes */
  mk_array_writer w;
  mk_buf events;
  int want_rc; /* the error the writer must give, or 0 */
  int got_rc;  /* the error it gave */
} gen;

static void add(mk_buf *b, const void *s, size_t n) {
  FUZZ_CHECK(mk_buf_add(b, s, n) == 0);
}

/* Records the writer's answer to one call; returns 1 when building must stop. */
static int wrote(gen *g, int rc) {
  FUZZ_CHECK(rc != MK_TEXT_ENOMEM);
  if (rc != 0)
    g->got_rc = rc;
  return rc != 0;
}

static void expect_bytes(gen *g, char tag, const char *s, size_t n) {
  add(&g->events, &tag, 1);
  add(&g->events, &n, sizeof n);
  add(&g->events, s, n);
}

/* One element; returns 1 when the writer refused it. */
static int gen_scalar(gen *g) {
  char str[64];
  unsigned kind = fuzz_byte(&g->r) % 10, n, i;

  switch (kind) {
  case 0:
    add(&g->events, "N", 1);
    return wrote(g, mk_array_writer_null(&g->w));
  case 1: {
    int v = fuzz_byte(&g->r) & 1;
    expect_bytes(g, 'S', v ? "t" : "f", 1);
    return wrote(g, mk_array_writer_bool(&g->w, v));
  }
  case 2: {
    long long v = (long long)fuzz_u64(&g->r);
    if (fuzz_byte(&g->r) & 1) /* often within 32 bits */
      v = (long long)(int32_t)v;
    add(&g->events, "I", 1);
    add(&g->events, &v, sizeof v);
    return wrote(g, mk_array_writer_int(&g->w, v));
  }
  case 3: {
    uint64_t bits = fuzz_u64(&g->r);
    double x;
    memcpy(&x, &bits, sizeof x);
    add(&g->events, "D", 1);
    add(&g->events, &x, sizeof x);
    return wrote(g, mk_array_writer_float(&g->w, x));
  }
  case 4: {
    unsigned char raw[16];
    n = fuzz_byte(&g->r) % (unsigned)sizeof raw;
    for (i = 0; i < n; i++)
      raw[i] = (unsigned char)fuzz_byte(&g->r);
    expect_bytes(g, 'B', (const char *)raw, n);
    return wrote(g, mk_array_writer_bytea(&g->w, raw, n));
  }
  case 5: { /* words the parser must not take for NULL once quoted */
    static const char *words[] = {"NULL", "null", "", "NuLl", " NULL ", "\\N"};
    const char *s = words[fuzz_byte(&g->r) % 6];
    expect_bytes(g, 'S', s, strlen(s));
    return wrote(g, mk_array_writer_string(&g->w, s, strlen(s)));
  }
  case 6:
    if (fuzz_byte(&g->r) % 8 == 0) { /* a NUL byte: refused, nothing written */
      size_t before = g->lit.len;
      g->want_rc = MK_TEXT_ENUL;
      FUZZ_CHECK(mk_array_writer_string(&g->w, "a\0b", 3) == MK_TEXT_ENUL);
      FUZZ_CHECK(g->lit.len == before);
      g->got_rc = MK_TEXT_ENUL;
      return 1;
    }
    /* fall through */
  default:
    n = fuzz_byte(&g->r) % (unsigned)sizeof str;
    for (i = 0; i < n; i++) {
      unsigned c = fuzz_byte(&g->r);
      str[i] = c < 0x20 ? special[c % (sizeof special - 1)] : (char)c;
    }
    expect_bytes(g, 'S', str, n);
    return wrote(g, mk_array_writer_string(&g->w, str, n));
  }
}

/* One array at the given depth (1 for the outermost); returns 1 when building stopped. */
static int gen_array(gen *g, int depth) {
  unsigned b = fuzz_byte(&g->r), nchild = b % 5, mode = (b >> 3) & 7, i;
  int has_scalar = 0, has_array = 0;

  if (depth > MK_TEXT_MAXDEPTH) {
    g->want_rc = MK_TEXT_EDEPTH;
    FUZZ_CHECK(mk_array_writer_open(&g->w) == MK_TEXT_EDEPTH);
    g->got_rc = MK_TEXT_EDEPTH;
    return 1;
  }
  add(&g->events, "O", 1);
  if (wrote(g, mk_array_writer_open(&g->w)))
    return 1;
  for (i = 0; i < nchild; i++) {
    int sub = mode >= 4 && (mode < 7 || (fuzz_byte(&g->r) & 1));
    if ((sub && has_scalar) || (!sub && has_array))
      g->want_rc = MK_TEXT_EMIXED;
    if (sub) {
      has_array = 1;
      if (g->want_rc == MK_TEXT_EMIXED) {
        /* a sub-array one level too deep is EDEPTH first */
        if (depth == MK_TEXT_MAXDEPTH)
          g->want_rc = MK_TEXT_EDEPTH;
        g->got_rc = mk_array_writer_open(&g->w);
        return 1;
      }
      if (gen_array(g, depth + 1))
        return 1;
    } else {
      has_scalar = 1;
      if (gen_scalar(g))
        return 1;
    }
  }
  add(&g->events, "C", 1);
  return wrote(g, mk_array_writer_close(&g->w));
}

/* ---- the parser's side ---- */

typedef struct got {
  mk_buf events; /* 'O', 'C', 'N', 'S' + length + bytes */
  const char *scratch;
  size_t n;
} got;

static int on_open(void *ud) {
  add(&((got *)ud)->events, "O", 1);
  return 0;
}

static int on_close(void *ud) {
  add(&((got *)ud)->events, "C", 1);
  return 0;
}

static int on_elem(void *ud, const char *s, size_t len, int is_null) {
  got *gt = ud;
  if (is_null) {
    add(&gt->events, "N", 1);
    return 0;
  }
  FUZZ_CHECK(len == 0 || fuzz_within(s, len, gt->scratch, gt->n));
  add(&gt->events, "S", 1);
  add(&gt->events, &len, sizeof len);
  add(&gt->events, s, len);
  return 0;
}

/* A NUL-terminated copy of an element's text, for strtoll/strtod. */
static char *cstr(const char *s, size_t n) {
  char *p = fuzz_alloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* 1 if the parsed element text means the expected integer. */
static int int_matches(const char *s, size_t n, long long v) {
  char *t = cstr(s, n), *end;
  long long got;
  int ok;
  errno = 0;
  got = strtoll(t, &end, 10);
  ok = n > 0 && errno == 0 && *end == '\0' && got == v;
  free(t);
  return ok;
}

/* 1 if the parsed element text means the expected double, bit for bit. */
static int float_matches(const char *s, size_t n, double x) {
  char *t = cstr(s, n), *end;
  double got;
  int ok;
  if (isnan(x)) {
    ok = strcmp(t, "NaN") == 0;
  } else if (isinf(x)) {
    ok = strcmp(t, x > 0 ? "Infinity" : "-Infinity") == 0;
  } else {
    got = strtod(t, &end);
    ok = n > 0 && *end == '\0' && memcmp(&got, &x, sizeof x) == 0;
  }
  free(t);
  return ok;
}

/* Walks both event streams; 1 if they agree. */
static int same_structure(const mk_buf *want, const mk_buf *have) {
  size_t i = 0, j = 0;
  while (i < want->len) {
    char tag = want->data[i++];
    size_t n, m;
    if (j >= have->len)
      return 0;
    if (tag == 'O' || tag == 'C' || tag == 'N') {
      if (have->data[j++] != tag)
        return 0;
      continue;
    }
    if (have->data[j++] != 'S')
      return 0;
    memcpy(&m, have->data + j, sizeof m);
    j += sizeof m;
    if (tag == 'I') {
      long long v;
      memcpy(&v, want->data + i, sizeof v);
      i += sizeof v;
      if (!int_matches(have->data + j, m, v))
        return 0;
    } else if (tag == 'D') {
      double x;
      memcpy(&x, want->data + i, sizeof x);
      i += sizeof x;
      if (!float_matches(have->data + j, m, x))
        return 0;
    } else {
      memcpy(&n, want->data + i, sizeof n);
      i += sizeof n;
      if (tag == 'B') {
        char *text = fuzz_copy(have->data + j, m), *dec = fuzz_alloc(m);
        ssize_t k = mk_bytea_decode(text, m, dec);
        int ok = k == (ssize_t)n && (n == 0 || memcmp(dec, want->data + i, n) == 0);
        free(text);
        free(dec);
        if (!ok)
          return 0;
      } else if (m != n || (n && memcmp(have->data + j, want->data + i, n) != 0)) {
        return 0;
      }
      i += n;
    }
    j += m;
  }
  return j == have->len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gen g;
  got gt;
  char delim, *lit, *scratch;
  int rc;

  g.r.p = data;
  g.r.n = size;
  g.want_rc = 0;
  g.got_rc = 0;
  delim = fuzz_byte(&g.r) % 4 == 0 ? ';' : ',';
  mk_buf_init(&g.lit);
  mk_buf_init(&g.events);
  mk_array_writer_init(&g.w, &g.lit, delim);
  gen_array(&g, 1);
  if (g.want_rc != 0 || g.got_rc != 0) {
    /* the writer refused exactly what it must refuse */
    if (g.got_rc != g.want_rc) {
      fprintf(stderr, "writer gave %d, expected %d, after: %.*s\n", g.got_rc, g.want_rc,
              (int)(g.lit.len < 400 ? g.lit.len : 400), g.lit.data ? g.lit.data : "");
      abort();
    }
    mk_buf_free(&g.lit);
    mk_buf_free(&g.events);
    return 0;
  }
  /* finished: nothing may follow the outermost close */
  FUZZ_CHECK(mk_array_writer_open(&g.w) == MK_TEXT_ESTATE);
  FUZZ_CHECK(mk_array_writer_null(&g.w) == MK_TEXT_ESTATE);
  FUZZ_CHECK(mk_array_writer_close(&g.w) == MK_TEXT_ESTATE);

  lit = fuzz_copy(g.lit.data, g.lit.len);
  scratch = fuzz_alloc(g.lit.len);
  mk_buf_init(&gt.events);
  gt.scratch = scratch;
  gt.n = g.lit.len;
  {
    mk_array_sink sink = {on_open, on_close, on_elem, &gt};
    rc = mk_array_parse(lit, g.lit.len, delim, scratch, &sink);
  }
  if (rc != 0 || !same_structure(&g.events, &gt.events)) {
    fprintf(stderr, "written literal did not parse back (rc %d, delim %c): %.*s\n", rc, delim,
            (int)(g.lit.len < 400 ? g.lit.len : 400), g.lit.data);
    abort();
  }
  mk_buf_free(&gt.events);
  mk_buf_free(&g.lit);
  mk_buf_free(&g.events);
  free(lit);
  free(scratch);
  return 0;
}

/* fuzz_encode.c: the parameter encoder's core (src/lua/lparams.c, encode_array and
 * encode_element) against the array parser.
 * The fuzz data drives the building of a nested structure: arrays of sub-arrays or of
 * scalars (NULL, booleans, integers, floats, bytea, and NUL-free strings rich in quotes,
 * backslashes, braces, commas and blanks). It is written out exactly as lparams.c
 * does: '{', elements joined by ',', '}', strings through mk_text_quote, NULL, t/f and
 * numbers bare, bytea as its quoted "\x.." hex text. mk_array_parse with ',' must give
 * back the same structure and the same element bytes, in order. Levels that mix
 * scalars and sub-arrays, or nesting deeper than MK_TEXT_MAXDEPTH (which lparams.c
 * refuses before encoding), are generated too, and must be refused by the parser. */
#include "fuzz_util.h"

#include <math.h>

#include "mk_buf.h"
#include "mk_text.h"

/* Bytes the literal syntax cares about; string bytes below 0x20 map onto them. */
static const char special[] = "\"\\{},; \t\n\r=>[]:NULLnull$'\\\"{}";

typedef struct gen {
  fuzz_reader r;
  mk_buf lit;    /* the array literal */
  mk_buf events; /* expected: 'O', 'C', 'N', or 'S' + length + bytes */
  int malformed; /* a level mixes scalars and sub-arrays, or too deep */
} gen;

static void add(mk_buf *b, const void *s, size_t n) {
  FUZZ_CHECK(mk_buf_add(b, s, n) == 0);
}

static void expect_str(gen *g, const char *s, size_t n) {
  add(&g->events, "S", 1);
  add(&g->events, &n, sizeof n);
  add(&g->events, s, n);
}

/* An element written bare, as lparams.c does for booleans and numbers. */
static void bare(gen *g, const char *s) {
  add(&g->lit, s, strlen(s));
  expect_str(g, s, strlen(s));
}

/* lparams.c's format_float. */
static void format_float(char *out, size_t n, double x) {
  if (isnan(x))
    snprintf(out, n, "NaN");
  else if (isinf(x))
    snprintf(out, n, x > 0 ? "Infinity" : "-Infinity");
  else
    snprintf(out, n, "%.17g", x);
}

static void quoted(gen *g, const char *s, size_t n) {
  FUZZ_CHECK(memchr(s, '\0', n) == NULL);
  FUZZ_CHECK(mk_text_quote(&g->lit, s, n) == 0);
  expect_str(g, s, n);
}

static void gen_scalar(gen *g) {
  char num[64], str[64];
  unsigned kind = fuzz_byte(&g->r) % 8, n, i;

  switch (kind) {
  case 0:
    add(&g->lit, "NULL", 4);
    add(&g->events, "N", 1);
    break;
  case 1:
    bare(g, fuzz_byte(&g->r) & 1 ? "t" : "f");
    break;
  case 2:
    snprintf(num, sizeof num, "%lld", (long long)fuzz_u64(&g->r));
    bare(g, num);
    break;
  case 3: {
    uint64_t bits = fuzz_u64(&g->r);
    double x;
    memcpy(&x, &bits, sizeof x);
    format_float(num, sizeof num, x);
    bare(g, num);
    break;
  }
  case 4: { /* bytea element: its hex text, quoted */
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16];
    char text[2 + 2 * sizeof raw], dec[sizeof text];
    n = fuzz_byte(&g->r) % (unsigned)sizeof raw;
    text[0] = '\\';
    text[1] = 'x';
    for (i = 0; i < n; i++) {
      raw[i] = (unsigned char)fuzz_byte(&g->r);
      text[2 + 2 * i] = hex[raw[i] >> 4];
      text[3 + 2 * i] = hex[raw[i] & 15];
    }
    FUZZ_CHECK(mk_bytea_decode(text, 2 + 2 * n, dec) == (ssize_t)n &&
               (n == 0 || memcmp(dec, raw, n) == 0));
    quoted(g, text, 2 + 2 * n);
    break;
  }
  case 5: { /* words the parser must not take for NULL once quoted */
    static const char *words[] = {"NULL", "null", "", "NuLl", " NULL ", "\\N"};
    const char *w = words[fuzz_byte(&g->r) % 6];
    quoted(g, w, strlen(w));
    break;
  }
  default:
    n = fuzz_byte(&g->r) % (unsigned)sizeof str;
    for (i = 0; i < n; i++) {
      unsigned c = fuzz_byte(&g->r);
      str[i] = c < 0x20 ? special[c % (sizeof special - 1)] : (char)c;
    }
    quoted(g, str, n);
    break;
  }
}

/* One array at the given depth (1 for the outermost). */
static void gen_array(gen *g, int depth) {
  unsigned b = fuzz_byte(&g->r), nchild = b % 5, mode = (b >> 3) & 7, i;
  int has_scalar = 0, has_array = 0;

  if (depth > MK_TEXT_MAXDEPTH)
    g->malformed = 1;
  add(&g->lit, "{", 1);
  add(&g->events, "O", 1);
  for (i = 0; i < nchild; i++) {
    int sub = mode >= 4 && (mode < 7 || (fuzz_byte(&g->r) & 1));
    if (depth > MK_TEXT_MAXDEPTH)
      sub = 0; /* one level too deep is enough */
    if (i > 0)
      add(&g->lit, ",", 1);
    if (sub) {
      has_array = 1;
      gen_array(g, depth + 1);
    } else {
      has_scalar = 1;
      gen_scalar(g);
    }
  }
  if (has_scalar && has_array)
    g->malformed = 1;
  add(&g->lit, "}", 1);
  add(&g->events, "C", 1);
}

/* ---- the parser's side ---- */

typedef struct got {
  mk_buf events;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gen g;
  got gt;
  char *lit, *scratch;
  int rc;

  g.r.p = data;
  g.r.n = size;
  g.malformed = 0;
  mk_buf_init(&g.lit);
  mk_buf_init(&g.events);
  gen_array(&g, 1);

  lit = fuzz_copy(g.lit.data, g.lit.len);
  scratch = fuzz_alloc(g.lit.len);
  mk_buf_init(&gt.events);
  gt.scratch = scratch;
  gt.n = g.lit.len;
  {
    mk_array_sink sink = {on_open, on_close, on_elem, &gt};
    rc = mk_array_parse(lit, g.lit.len, ',', scratch, &sink);
  }
  if (g.malformed) {
    FUZZ_CHECK(rc == MK_TEXT_EPARSE);
  } else if (rc != 0 || gt.events.len != g.events.len ||
             memcmp(gt.events.data, g.events.data, g.events.len) != 0) {
    fprintf(stderr, "encoded literal did not parse back (rc %d): %.*s\n", rc,
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

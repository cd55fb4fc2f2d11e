/* fuzz_array_rt.c: mk_array_parse round trip with any delimiter. The input picks a
 * delimiter (any byte the parser accepts: all but '{', '}', '"', '\\' and whitespace, as
 * CREATE TYPE's DELIMITER may be any byte; ',' for most types, ';' for box), an array
 * shape (1..6 dimensions of equal sub-array lengths, or the empty array), optional
 * lower bounds and whitespace, and the elements: NULLs, strings of any bytes, words
 * that spell NULL in some case, and strings of the bytes that need quoting.
 * The oracle, written here, is PostgreSQL's array_out: an element is double-quoted when
 * it is empty, spells NULL in any case, or holds '"', '\\', '{', '}', the delimiter or
 * whitespace, and then '"' and '\\' are backslash-escaped; NULL is bare; sub-arrays
 * nest in braces with the delimiter between items; a lower bound other than 1 puts the
 * "[lb:ub]...=" prefix in front. array_in also takes whitespace around every item,
 * which the oracle may add. Invariants:
 *  - the oracle's literal parses (0) to exactly the open/close/element events of the
 *    array generated, in order, every string byte for byte;
 *  - so does the literal mk_array_writer builds from the same array and delimiter
 *    (strings with a NUL byte are refused by it with MK_TEXT_ENUL instead).
 * A delimiter that is a letter of NULL makes a bare NULL ambiguous (for the server too),
 * so with one of those the array holds no NULLs. */
#include "fuzz_util.h"

#include "mk_buf.h"
#include "mk_text.h"

#define MAXELEMS 64
#define MAXSTR 16

typedef struct elem {
  int is_null;
  const char *s;
  size_t n;
} elem;

typedef struct gen {
  char delim;
  int ndims, dims[MK_TEXT_MAXDEPTH], lbounds[MK_TEXT_MAXDEPTH], decorated;
  int nelems;
  elem e[MAXELEMS];
  char words[MAXELEMS][MAXSTR]; /* strings made up here rather than taken from the input */
  fuzz_reader *rd;
  unsigned spaces; /* 0: no extra whitespace */
} gen;

/* The harness's own output (literals, event lists) goes to fixed buffers rather than
 * mk_buf: byte-at-a-time appends through the instrumented core were a third of the time. */
#define TEXTMAX 8192

typedef struct text {
  size_t len;
  char d[TEXTMAX];
} text;

static void add(text *t, const void *s, size_t n) {
  FUZZ_CHECK(n <= TEXTMAX - t->len);
  if (n) memcpy(t->d + t->len, s, n);
  t->len += n;
}

static void addc(text *t, char c) {
  FUZZ_CHECK(t->len < TEXTMAX);
  t->d[t->len++] = c;
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int spells_null(const char *s, size_t n) {
  size_t i;
  if (n != 4) return 0;
  for (i = 0; i < 4; i++)
    if ((s[i] & ~0x20) != "NULL"[i]) return 0;
  return 1;
}

/* Whitespace array_in skips, when the input asks for it. */
static void space(gen *g, text *b) {
  static const char ws[] = " \t\n\r\v\f";
  unsigned c;
  if (!g->spaces) return;
  c = fuzz_byte(g->rd);
  if (c & 1) addc(b, ws[(c >> 1) % 6]);
}

/* array_out's element: bare, or quoted with '"' and '\\' escaped. */
static void oracle_elem(gen *g, text *b, const elem *e) {
  size_t i;
  int quote = e->n == 0 || spells_null(e->s, e->n);
  if (e->is_null) {
    add(b, "NULL", 4);
    return;
  }
  for (i = 0; i < e->n && !quote; i++) {
    char c = e->s[i];
    quote = c == '"' || c == '\\' || c == '{' || c == '}' || c == g->delim || is_space(c);
  }
  if (!quote) {
    add(b, e->s, e->n);
    return;
  }
  addc(b, '"');
  for (i = 0; i < e->n; i++) {
    if (e->s[i] == '"' || e->s[i] == '\\') addc(b, '\\');
    addc(b, e->s[i]);
  }
  addc(b, '"');
}

/* Writes dimension d onward, from element *k. */
static void oracle_dim(gen *g, text *b, int d, int *k) {
  int i;
  space(g, b);
  addc(b, '{');
  for (i = 0; i < g->dims[d]; i++) {
    if (i > 0) addc(b, g->delim);
    if (d + 1 < g->ndims) {
      oracle_dim(g, b, d + 1, k);
    } else {
      space(g, b);
      oracle_elem(g, b, &g->e[(*k)++]);
      space(g, b);
    }
  }
  addc(b, '}');
  space(g, b);
}

static void oracle_literal(gen *g, text *b) {
  int d, k = 0;
  if (g->decorated) {
    for (d = 0; d < g->ndims; d++) {
      char num[64];
      int n = snprintf(num, sizeof num, "[%d:%d]", g->lbounds[d], g->lbounds[d] + g->dims[d] - 1);
      add(b, num, (size_t)n);
    }
    addc(b, '=');
  }
  if (g->ndims == 0) {
    space(g, b);
    add(b, "{}", 2);
    space(g, b);
    return;
  }
  oracle_dim(g, b, 0, &k);
  FUZZ_CHECK(k == g->nelems);
}

/* The events the array should give: 'O', 'C', 'N', or 'S' + length + bytes. */
static void expect_dim(const gen *g, text *ev, int d, int *k) {
  int i;
  addc(ev, 'O');
  for (i = 0; i < g->dims[d]; i++) {
    if (d + 1 < g->ndims) {
      expect_dim(g, ev, d + 1, k);
    } else {
      const elem *e = &g->e[(*k)++];
      if (e->is_null) {
        addc(ev, 'N');
      } else {
        addc(ev, 'S');
        add(ev, &e->n, sizeof e->n);
        add(ev, e->s, e->n);
      }
    }
  }
  addc(ev, 'C');
}

/* The same array through the core's writer; MK_TEXT_ENUL for a string with NUL. */
static int writer_dim(const gen *g, mk_array_writer *w, int d, int *k) {
  int i, rc;
  if ((rc = mk_array_writer_open(w)) != 0) return rc;
  for (i = 0; i < g->dims[d]; i++) {
    if (d + 1 < g->ndims) {
      rc = writer_dim(g, w, d + 1, k);
    } else {
      const elem *e = &g->e[(*k)++];
      rc = e->is_null ? mk_array_writer_null(w) : mk_array_writer_string(w, e->s, e->n);
    }
    if (rc != 0) return rc;
  }
  return mk_array_writer_close(w);
}

static int on_open(void *ud) {
  addc(ud, 'O');
  return 0;
}

static int on_close(void *ud) {
  addc(ud, 'C');
  return 0;
}

static int on_elem(void *ud, const char *s, size_t len, int is_null) {
  if (is_null) {
    addc(ud, 'N');
  } else {
    addc(ud, 'S');
    add(ud, &len, sizeof len);
    add(ud, s, len);
  }
  return 0;
}

/* Parses an exact-size copy of the literal and checks its events against want. */
static void check_parse(const char *lit, size_t len, char delim, const text *want) {
  static text got;
  char *copy = fuzz_copy(lit, len), *scratch = fuzz_alloc(len);
  mk_array_sink sink = {on_open, on_close, on_elem, NULL};
  int rc;
  got.len = 0;
  sink.ud = &got;
  rc = mk_array_parse(copy, len, delim, scratch, &sink);
  if (rc != 0 || got.len != want->len || memcmp(got.d, want->d, want->len) != 0) {
    fprintf(stderr, "array literal (%zu bytes, delimiter 0x%02x) did not round-trip, rc %d: %.*s\n",
            len, (unsigned char)delim, rc, (int)len, lit);
    abort();
  }
  free(scratch);
  free(copy);
}

static int refused_delim(char d) {
  return d == '{' || d == '}' || d == '"' || d == '\\' || is_space(d);
}

/* A string of the bytes that need quoting (and a few that do not). */
static size_t special_word(gen *g, char *out) {
  const char set[] = {'"', '\\', '{', '}', g->delim, ' ', '\t', '\n', '\r', '\v', '\f', 'a', ',', ';', 'N', '\0'};
  size_t n = fuzz_byte(g->rd) % MAXSTR, i;
  for (i = 0; i < n; i++) out[i] = set[fuzz_byte(g->rd) % sizeof set];
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_reader rd = {data, size};
  gen g;
  static text lit, want;
  static mk_buf written; /* mk_array_writer's; kept from one run to the next */
  int d, k, total = 1, nulls, has_nul = 0;
  unsigned shape;

  memset(&g, 0, sizeof g);
  g.rd = &rd;
  g.delim = (char)fuzz_byte(&rd);
  if (refused_delim(g.delim)) return 0; /* fuzz_array checks that those are refused */
  nulls = memchr("NnUuLl", g.delim, 6) == NULL;
  shape = fuzz_byte(&rd);
  g.spaces = shape & 0x80;
  g.decorated = (shape & 0x40) != 0;
  g.ndims = (int)(shape % (MK_TEXT_MAXDEPTH + 1)); /* 0: the empty array */
  for (d = 0; d < g.ndims; d++) {
    unsigned c = fuzz_byte(&rd);
    g.dims[d] = 1 + (int)(c % (g.ndims == 1 ? 16u : 4u));
    g.lbounds[d] = (int)(signed char)fuzz_byte(&rd);
    if (total * g.dims[d] > MAXELEMS) g.dims[d] = MAXELEMS / total;
    total *= g.dims[d];
  }
  if (g.ndims == 0) {
    total = 0;
    g.decorated = 0; /* array_out writes an empty array as {} alone */
  }
  g.nelems = total;
  for (k = 0; k < total; k++) {
    elem *e = &g.e[k];
    unsigned pick = fuzz_byte(&rd);
    switch (pick % 4) {
    case 0:
      if (nulls) {
        e->is_null = 1;
        break;
      }
      /* fall through: a string instead */
    case 1:
      e->n = (pick >> 2) % MAXSTR;
      if (e->n > rd.n) e->n = rd.n;
      e->s = (const char *)rd.p;
      rd.p += e->n;
      rd.n -= e->n;
      break;
    case 2: /* NULL in some case: quoted, so a string */
      for (d = 0; d < 4; d++) g.words[k][d] = (char)("NULL"[d] | ((pick >> (2 + d)) & 1 ? 0x20 : 0));
      e->s = g.words[k];
      e->n = 4;
      break;
    default:
      e->n = special_word(&g, g.words[k]);
      e->s = g.words[k];
      break;
    }
    if (!e->is_null && e->n > 0 && memchr(e->s, '\0', e->n) != NULL) has_nul = 1;
  }

  lit.len = want.len = 0;
  if (g.ndims == 0) {
    add(&want, "OC", 2);
  } else {
    k = 0;
    expect_dim(&g, &want, 0, &k);
  }
  oracle_literal(&g, &lit);
  check_parse(lit.d, lit.len, g.delim, &want);

  if (g.ndims > 0) {
    mk_array_writer w;
    int rc;
    written.len = 0;
    mk_array_writer_init(&w, &written, g.delim);
    k = 0;
    rc = writer_dim(&g, &w, 0, &k);
    if (has_nul) {
      FUZZ_CHECK(rc == MK_TEXT_ENUL);
    } else {
      FUZZ_CHECK(rc == 0 && w.finished && w.depth == 0);
      check_parse(written.data, written.len, g.delim, &want);
    }
  }
  return 0;
}

/* fuzz_copy.c: the COPY text encoder (mk_copy) against a decoder written here from
 * PostgreSQL's documented rules for COPY FROM in text format, the oracle.
 * The input is a stream of choices: rows of 1..8 values, each a NULL, a string of any
 * bytes (tab, newline, CR, backslash, NUL and high bytes included: the encoder sends NUL
 * as it is), an integer, a float (any bit pattern: NaN, +-Infinity, -0, subnormals) or a
 * boolean. They are encoded as lcopy does (mk_copy_add_*, mk_copy_next_column between
 * values, mk_copy_end_row after each row), then decoded by the oracle:
 *  - a row ends at a newline; a backslash quotes the byte after it, even a newline, so
 *    that byte never ends the row; a raw carriage return is an error (the server takes
 *    the first row's line ending for all rows and refuses a stray CR); a line that is
 *    exactly \. ends the data, which an encoder must never write;
 *  - values are split at raw tabs; a value whose raw text is exactly \N is NULL;
 *  - in a value, \b \f \n \r \t \v are the control characters, \ and one to three octal
 *    digits is that byte, \x and one or two hex digits is that byte, and a backslash
 *    before anything else is that byte;
 *  - integers must read back (int8in: optional sign, digits) as the same value, floats
 *    (float8in) as the same bits, or NaN / Infinity / -Infinity; booleans are t or f.
 * The oracle must find exactly the rows and values encoded; anything else aborts. */
#include "fuzz_util.h"

#include <math.h>

#include "mk_buf.h"
#include "mk_copy.h"

#define MAXVALUES 256
#define MAXCOLS 8
#define MAXSTR 64

enum { V_NULL, V_STRING, V_INT, V_FLOAT, V_BOOL, V_KINDS };

typedef struct value {
  int kind;
  const uint8_t *s; /* V_STRING: its bytes, in the fuzz input */
  size_t n;
  long long i;
  double d;
  int b;
} value;

/* One decoded value, in dec (the oracle's own output buffer). */
typedef struct field {
  int is_null;
  size_t off, n;
} field;

static int is_octal(uint8_t c) { return c >= '0' && c <= '7'; }

static int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes the raw value [p, end) into dec at *len (de-escaping as COPY FROM does). */
static void decode_value(const uint8_t *p, const uint8_t *end, char *dec, size_t *len) {
  while (p < end) {
    uint8_t c = *p++;
    if (c == '\\') {
      if (p == end) break; /* a backslash ending the line adds nothing */
      c = *p++;
      if (is_octal(c)) {
        int v = c - '0', k;
        for (k = 0; k < 2 && p < end && is_octal(*p); k++) v = v * 8 + (*p++ - '0');
        c = (uint8_t)(v & 0377);
      } else if (c == 'x' && p < end && hex_value(*p) >= 0) {
        int v = hex_value(*p++);
        if (p < end && hex_value(*p) >= 0) v = v * 16 + hex_value(*p++);
        c = (uint8_t)v;
      } else {
        switch (c) {
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'v': c = '\v'; break;
        default: break; /* that byte itself */
        }
      }
    }
    dec[(*len)++] = (char)c;
  }
}

/* Splits one line [p, end) into fields. Returns the number of fields; aborts on more
 * than max. */
static int decode_line(const uint8_t *p, const uint8_t *end, char *dec, size_t *declen,
                       field *f, int max) {
  int nf = 0;
  for (;;) {
    const uint8_t *start = p;
    while (p < end && *p != '\t') p += (*p == '\\' && p + 1 < end) ? 2 : 1;
    FUZZ_CHECK(nf < max);
    f[nf].is_null = (p - start == 2 && start[0] == '\\' && start[1] == 'N');
    f[nf].off = *declen;
    if (!f[nf].is_null) decode_value(start, p, dec, declen);
    f[nf].n = *declen - f[nf].off;
    nf++;
    if (p == end) return nf;
    p++; /* the tab */
  }
}

/* int8in: optional sign, then decimal digits, nothing else, within range. */
static void check_int(const char *s, size_t n, long long want) {
  unsigned long long u = 0;
  size_t i = 0;
  int neg = 0;
  if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  FUZZ_CHECK(i < n);
  for (; i < n; i++) {
    FUZZ_CHECK(s[i] >= '0' && s[i] <= '9');
    FUZZ_CHECK(u <= (0x8000000000000000ULL - (unsigned)(s[i] - '0')) / 10);
    u = u * 10 + (unsigned)(s[i] - '0');
  }
  FUZZ_CHECK(neg ? u <= 0x8000000000000000ULL : u <= 0x7fffffffffffffffULL);
  FUZZ_CHECK((neg ? 0ULL - u : u) == (unsigned long long)want);
}

static int text_is(const char *s, size_t n, const char *word) {
  return n == strlen(word) && memcmp(s, word, n) == 0;
}

/* float8in: NaN, Infinity, -Infinity, or a number strtod reads entirely, as the same
 * bits. */
static void check_float(const char *s, size_t n, double want) {
  char text[64], *end;
  double got;
  if (isnan(want)) {
    FUZZ_CHECK(text_is(s, n, "NaN"));
    return;
  }
  if (isinf(want)) {
    FUZZ_CHECK(text_is(s, n, want > 0 ? "Infinity" : "-Infinity"));
    return;
  }
  FUZZ_CHECK(n > 0 && n < sizeof text);
  memcpy(text, s, n);
  text[n] = '\0';
  got = strtod(text, &end);
  FUZZ_CHECK(end == text + n);
  FUZZ_CHECK(memcmp(&got, &want, sizeof got) == 0);
}

static void check_value(const value *v, const field *f, const char *dec) {
  const char *s = dec + f->off;
  FUZZ_CHECK(f->is_null == (v->kind == V_NULL));
  switch (v->kind) {
  case V_STRING:
    FUZZ_CHECK(f->n == v->n && (v->n == 0 || memcmp(s, v->s, v->n) == 0));
    break;
  case V_INT: check_int(s, f->n, v->i); break;
  case V_FLOAT: check_float(s, f->n, v->d); break;
  case V_BOOL: FUZZ_CHECK(text_is(s, f->n, v->b ? "t" : "f")); break;
  default: break;
  }
}

static void encode(mk_buf *b, const value *v) {
  int rc = 0;
  switch (v->kind) {
  case V_NULL: rc = mk_copy_add_null(b); break;
  case V_STRING: rc = mk_copy_add_value(b, (const char *)v->s, v->n); break;
  case V_INT: rc = mk_copy_add_int(b, v->i); break;
  case V_FLOAT: rc = mk_copy_add_float(b, v->d); break;
  default: rc = mk_copy_add_bool(b, v->b); break;
  }
  FUZZ_CHECK(rc == 0);
}

static value values[MAXVALUES];
static int rowlen[MAXVALUES];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_reader rd = {data, size};
  int nvalues = 0, nrows = 0, row, k;
  static mk_buf b; /* kept from one run to the next: no growing it every time */
  char *enc, *dec;
  size_t enclen, declen = 0;
  const uint8_t *p, *end;
  field f[MAXCOLS];

  b.len = 0;
  while (rd.n > 0 && nvalues + MAXCOLS <= MAXVALUES) {
    int ncols = 1 + (int)(fuzz_byte(&rd) % MAXCOLS), c;
    for (c = 0; c < ncols; c++) {
      value *v = &values[nvalues++];
      unsigned pick = fuzz_byte(&rd);
      memset(v, 0, sizeof *v);
      v->kind = (int)(pick % V_KINDS);
      if (v->kind == V_STRING) {
        v->n = (pick / V_KINDS) % MAXSTR;
        if (v->n > rd.n) v->n = rd.n;
        v->s = rd.p;
        rd.p += v->n;
        rd.n -= v->n;
      } else if (v->kind == V_INT) {
        v->i = (long long)fuzz_u64(&rd);
      } else if (v->kind == V_FLOAT) {
        uint64_t bits = fuzz_u64(&rd);
        memcpy(&v->d, &bits, sizeof v->d);
      } else if (v->kind == V_BOOL) {
        v->b = (int)(pick / V_KINDS) & 1;
      }
      if (c > 0) FUZZ_CHECK(mk_copy_next_column(&b) == 0);
      encode(&b, v);
    }
    FUZZ_CHECK(mk_copy_end_row(&b) == 0);
    rowlen[nrows++] = ncols;
  }

  /* The oracle reads an exact-size copy, so a read past the end is caught. */
  enclen = b.len;
  enc = fuzz_copy(b.data, enclen);
  dec = fuzz_alloc(enclen);
  p = (const uint8_t *)enc;
  end = p + enclen;
  k = 0;
  for (row = 0; p < end; row++) {
    const uint8_t *line = p;
    int nf, c;
    /* the line: up to a newline not quoted by a backslash */
    while (p < end && *p != '\n') {
      FUZZ_CHECK(*p != '\r');
      p += (*p == '\\' && p + 1 < end) ? 2 : 1;
    }
    FUZZ_CHECK(p < end); /* every row ends with its newline */
    FUZZ_CHECK(!(p - line == 2 && line[0] == '\\' && line[1] == '.'));
    FUZZ_CHECK(row < nrows);
    nf = decode_line(line, p, dec, &declen, f, MAXCOLS);
    FUZZ_CHECK(nf == rowlen[row]);
    for (c = 0; c < nf; c++) check_value(&values[k++], &f[c], dec);
    p++; /* the newline */
  }
  FUZZ_CHECK(row == nrows && k == nvalues);
  FUZZ_CHECK(declen <= enclen);
  free(dec);
  free(enc);
  return 0;
}

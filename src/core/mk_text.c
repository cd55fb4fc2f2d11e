/* mk_text.c: PostgreSQL text-format codecs declared in mk_text.h: the array literal
 * parser and writer, the hstore parser, the bytea decoder, the quoting used to build
 * array and hstore literals, and the number formats parameters are sent in. Inputs are byte ranges, never NUL-terminated, so every read is
 * bounded by the end pointer. The parsers own no memory: unescaped strings go into the
 * caller's scratch area, each at a fresh offset, so a callback may look at every string
 * it was given until the caller releases the scratch. Each output byte consumes at least
 * one input byte, which is why a scratch area as long as the input always suffices. */
#include "mk_text.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The whitespace PostgreSQL's own scanners skip (scanner_isspace), independent of the
 * C locale. */
static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static const char *skip_space(const char *p, const char *end) {
  while (p < end && is_space(*p))
    p++;
  return p;
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* 1 if the n bytes at s spell NULL in any case. */
static int is_null_word(const char *s, size_t n) {
  static const char word[] = "NULL";
  size_t i;

  if (n != 4)
    return 0;
  for (i = 0; i < 4; i++) {
    char c = s[i];
    if (c >= 'a' && c <= 'z')
      c = (char)(c - 'a' + 'A');
    if (c != word[i])
      return 0;
  }
  return 1;
}

/* Reads a double-quoted string starting at the '"' at *pp, unescaping backslashes into
 * out. On success stores the unescaped length in *n, leaves *pp after the closing quote
 * and returns 0; returns MK_TEXT_EPARSE when the input ends first. */
static int read_quoted(const char **pp, const char *end, char *out, size_t *n) {
  const char *p = *pp + 1;
  size_t k = 0;

  for (;;) {
    if (p == end)
      return MK_TEXT_EPARSE;
    if (*p == '"')
      break;
    if (*p == '\\' && ++p == end)
      return MK_TEXT_EPARSE;
    out[k++] = *p++;
  }
  *pp = p + 1;
  *n = k;
  return 0;
}

/* ---- arrays ---- */

/* Skips the optional dimension decoration "[lb:ub][lb:ub]...=" (each bound an optionally
 * signed integer, the "lb:" part optional, as array_in accepts). The bounds are not
 * checked against the braces: the nesting of the braces is what the sink reports. */
static int skip_dimensions(const char **pp, const char *end) {
  const char *p = skip_space(*pp, end);
  int ndim = 0;

  while (p < end && *p == '[') {
    int bound;
    if (++ndim > MK_TEXT_MAXDEPTH)
      return MK_TEXT_EPARSE;
    p++;
    /* One or two bounds separated by ':', then ']'. */
    for (bound = 0; bound < 2; bound++) {
      const char *digits;
      p = skip_space(p, end);
      if (p < end && (*p == '+' || *p == '-'))
        p++;
      digits = p;
      while (p < end && is_digit(*p))
        p++;
      if (p == digits)
        return MK_TEXT_EPARSE;
      p = skip_space(p, end);
      if (bound == 0 && p < end && *p == ':')
        p++;
      else
        break;
    }
    if (p == end || *p != ']')
      return MK_TEXT_EPARSE;
    p = skip_space(p + 1, end);
  }
  if (ndim > 0) {
    if (p == end || *p != '=')
      return MK_TEXT_EPARSE;
    p++;
  }
  *pp = p;
  return 0;
}

/* Reads an unquoted element starting at the non-space byte *pp. Backslash escapes the
 * next byte; surrounding whitespace is dropped but escaped whitespace is kept, so the
 * trimmed length is the position just after the last significant byte. The element
 * ends at delim or '}'; a bare '{' or '"' inside it is malformed. *escaped tells the
 * caller whether NULL was spelled with an escape (then it is the string "NULL"). */
static int read_unquoted(const char **pp, const char *end, char delim, char *out,
                         size_t *n, int *escaped) {
  const char *p = *pp;
  size_t k = 0, keep = 0;

  *escaped = 0;
  while (p < end && *p != delim && *p != '}') {
    char c = *p++;
    if (c == '{' || c == '"')
      return MK_TEXT_EPARSE;
    if (c == '\\') {
      if (p == end)
        return MK_TEXT_EPARSE;
      out[k++] = *p++;
      keep = k;
      *escaped = 1;
    } else {
      out[k++] = c;
      if (!is_space(c))
        keep = k;
    }
  }
  if (k == 0) /* an empty element, as in {1,,2} */
    return MK_TEXT_EPARSE;
  *pp = p;
  *n = keep;
  return 0;
}

/* What a (sub)array holds so far: PostgreSQL rejects mixing scalars and sub-arrays at
 * one level, as in {1,{2}}. */
enum { HOLDS_NOTHING, HOLDS_SCALARS, HOLDS_ARRAYS };

/* Parses one scalar element at *pp (quoted or not) and hands it to the sink. */
static int array_scalar(const char **pp, const char *end, char delim, char **scratch,
                        const mk_array_sink *sink) {
  size_t n = 0;
  int escaped = 0, quoted = (**pp == '"'), rc;

  rc = quoted ? read_quoted(pp, end, *scratch, &n)
              : read_unquoted(pp, end, delim, *scratch, &n, &escaped);
  if (rc != 0)
    return rc;
  rc = sink->elem(sink->ud, *scratch, n, !quoted && !escaped && is_null_word(*scratch, n));
  *scratch += n;
  return rc;
}

/* Parses an array literal (see mk_text.h). The nesting is walked with a depth counter
 * rather than recursion; holds[d] records what the array at depth d contains. */
int mk_array_parse(const char *text, size_t len, char delim, char *scratch,
                   const mk_array_sink *sink) {
  const char *p = text, *end = text + len;
  int holds[MK_TEXT_MAXDEPTH + 1];
  int depth = 0, after_item = 0, rc;

  /* Delimiters that would be ambiguous with the literal's own syntax. */
  if (delim == '{' || delim == '}' || delim == '"' || delim == '\\' || is_space(delim))
    return MK_TEXT_EPARSE;
  if ((rc = skip_dimensions(&p, end)) != 0)
    return rc;
  p = skip_space(p, end);
  if (p == end || *p != '{')
    return MK_TEXT_EPARSE;

  /* Invariant at the top of the loop: *p is '{' to open (depth == 0 or after a '{' or
   * delim), or, when after_item, the array at depth continues with delim or '}'. */
  for (;;) {
    p = skip_space(p, end);
    if (p == end)
      return MK_TEXT_EPARSE;
    if (after_item) {
      if (*p == delim) {
        after_item = 0;
        p = skip_space(p + 1, end);
        /* An element must follow a delimiter: {1,} is malformed. */
        if (p == end || *p == '}')
          return MK_TEXT_EPARSE;
        continue;
      }
      if (*p != '}')
        return MK_TEXT_EPARSE;
      p++;
      if ((rc = sink->close(sink->ud)) != 0)
        return rc;
      if (--depth == 0)
        break;
      continue;
    }
    if (*p == '{') {
      if (depth > 0) {
        if (holds[depth] == HOLDS_SCALARS)
          return MK_TEXT_EPARSE;
        holds[depth] = HOLDS_ARRAYS;
      }
      if (++depth > MK_TEXT_MAXDEPTH)
        return MK_TEXT_EPARSE;
      holds[depth] = HOLDS_NOTHING;
      p++;
      if ((rc = sink->open(sink->ud)) != 0)
        return rc;
      /* {} is an empty (sub)array: let the after_item branch consume its '}'. */
      p = skip_space(p, end);
      if (p < end && *p == '}')
        after_item = 1;
      continue;
    }
    if (holds[depth] == HOLDS_ARRAYS)
      return MK_TEXT_EPARSE;
    holds[depth] = HOLDS_SCALARS;
    if ((rc = array_scalar(&p, end, delim, &scratch, sink)) != 0)
      return rc;
    after_item = 1;
  }
  /* Only whitespace may follow the outermost '}'. */
  return skip_space(p, end) == end ? 0 : MK_TEXT_EPARSE;
}

/* ---- hstore ---- */

/* Reads one hstore key or value at the non-space byte *pp into out: a quoted string, or
 * an unquoted word that ends at whitespace, ',' or (for a key) '='. As in hstore's input
 * parser, backslash escapes the next byte in both forms. *is_null is set for an
 * unquoted, unescaped NULL in any case; only the caller decides whether that matters. */
static int hstore_token(const char **pp, const char *end, int is_key, char *out,
                        size_t *n, int *is_null) {
  const char *p = *pp;
  size_t k = 0;
  int escaped = 0;

  *is_null = 0;
  if (p < end && *p == '"')
    return read_quoted(pp, end, out, n);
  while (p < end && !is_space(*p) && *p != ',' && !(is_key && *p == '=')) {
    if (*p == '\\') {
      if (++p == end)
        return MK_TEXT_EPARSE;
      escaped = 1;
    }
    out[k++] = *p++;
  }
  if (k == 0)
    return MK_TEXT_EPARSE;
  *is_null = !escaped && is_null_word(out, k);
  *pp = p;
  *n = k;
  return 0;
}

/* Parses hstore text (see mk_text.h): pairs key=>value separated by ',', whitespace
 * around every token, "=>" written without a space inside it. Empty or all-whitespace
 * input is zero pairs, and a trailing ',' is accepted as hstore's input parser does. */
int mk_hstore_parse(const char *text, size_t len, char *scratch,
                    mk_hstore_pair_fn pair, void *ud) {
  const char *p = text, *end = text + len;
  int rc;

  for (;;) {
    const char *key, *val;
    size_t klen = 0, vlen = 0;
    int key_null = 0, val_null = 0;

    p = skip_space(p, end);
    if (p == end)
      return 0;
    /* A key spelled NULL is just the string "NULL": hstore keys cannot be null. */
    if ((rc = hstore_token(&p, end, 1, scratch, &klen, &key_null)) != 0)
      return rc;
    key = scratch;
    scratch += klen;
    p = skip_space(p, end);
    if (end - p < 2 || p[0] != '=' || p[1] != '>')
      return MK_TEXT_EPARSE;
    p = skip_space(p + 2, end);
    if ((rc = hstore_token(&p, end, 0, scratch, &vlen, &val_null)) != 0)
      return rc;
    val = scratch;
    scratch += vlen;
    if ((rc = pair(ud, key, klen, val, vlen, val_null)) != 0)
      return rc;
    p = skip_space(p, end);
    if (p == end)
      return 0;
    if (*p != ',')
      return MK_TEXT_EPARSE;
    p++;
  }
}

/* ---- bytea ---- */

/* The value of a hex digit in either case, or -1. */
static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static ssize_t bytea_hex(const char *p, size_t len, char *out) {
  size_t i;

  if (len % 2 != 0)
    return -1;
  for (i = 0; i < len; i += 2) {
    int hi = hex_value(p[i]), lo = hex_value(p[i + 1]);
    if (hi < 0 || lo < 0)
      return -1;
    out[i / 2] = (char)(unsigned char)(hi * 16 + lo);
  }
  return (ssize_t)(len / 2);
}

/* The escape format as byteaout writes it: "\\" for a backslash, "\ooo" with the first
 * digit 0-3 (so the value fits a byte), every other byte as itself. A backslash
 * followed by anything else is malformed, as in byteain. */
static ssize_t bytea_escape(const char *p, size_t len, char *out) {
  size_t i = 0, k = 0;

  while (i < len) {
    if (p[i] != '\\') {
      out[k++] = p[i++];
    } else if (len - i >= 2 && p[i + 1] == '\\') {
      out[k++] = '\\';
      i += 2;
    } else if (len - i >= 4 && p[i + 1] >= '0' && p[i + 1] <= '3' && p[i + 2] >= '0' &&
               p[i + 2] <= '7' && p[i + 3] >= '0' && p[i + 3] <= '7') {
      out[k++] = (char)(unsigned char)((p[i + 1] - '0') * 64 + (p[i + 2] - '0') * 8 +
                                       (p[i + 3] - '0'));
      i += 4;
    } else {
      return -1;
    }
  }
  return (ssize_t)k;
}

/* Decodes bytea text (see mk_text.h). Hex format is recognised by a leading "\x"
 * (lowercase only, as byteain does); its digits must come in pairs with no spaces,
 * which is what the server sends. */
ssize_t mk_bytea_decode(const char *text, size_t len, char *out) {
  if (len >= 2 && text[0] == '\\' && text[1] == 'x')
    return bytea_hex(text + 2, len - 2, out);
  return bytea_escape(text, len, out);
}

/* ---- quoting ---- */

/* Appends "s" with '"' and '\\' backslash-escaped. The exact size is reserved first so
 * that running out of memory leaves b as it was instead of half a literal. */
int mk_text_quote(mk_buf *b, const char *s, size_t n) {
  size_t i, extra;

  /* Worst case every byte doubles; refuse sizes where counting could wrap. */
  if (n > (SIZE_MAX - 2) / 2)
    return -1;
  extra = n + 2;
  for (i = 0; i < n; i++)
    extra += s[i] == '"' || s[i] == '\\';
  if (mk_buf_reserve(b, extra) != 0)
    return -1;
  /* Cannot fail now: the room is there. */
  b->data[b->len++] = '"';
  for (i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\')
      b->data[b->len++] = '\\';
    b->data[b->len++] = s[i];
  }
  b->data[b->len++] = '"';
  b->data[b->len] = '\0';
  return 0;
}

/* ---- numbers ---- */

/* By hand: snprintf costs more than the rest of binding a parameter. The magnitude is
 * taken as unsigned, so LLONG_MIN needs no special case. */
int mk_text_int(char *out, long long v) {
  char tmp[24];
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
  int n = 0, len = 0;
  do {
    tmp[n++] = (char)('0' + (int)(u % 10));
    u /= 10;
  } while (u);
  if (v < 0) out[len++] = '-';
  while (n) out[len++] = tmp[--n];
  out[len] = '\0';
  return len;
}

/* 17 significant digits make every finite double read back as itself; the special
 * values are spelled as float8in spells them. */
int mk_text_float(char *out, double x) {
  if (isnan(x))
    return snprintf(out, MK_TEXT_NUMLEN, "NaN");
  if (isinf(x))
    return snprintf(out, MK_TEXT_NUMLEN, x > 0 ? "Infinity" : "-Infinity");
  return snprintf(out, MK_TEXT_NUMLEN, "%.17g", x);
}

/* ---- array writer ---- */

void mk_array_writer_init(mk_array_writer *w, mk_buf *out, char delim) {
  w->out = out;
  w->delim = delim;
  w->depth = 0;
  w->finished = 0;
  w->kinds = 0;
  memset(w->holds, 0, sizeof w->holds);
}

/* Checks that an item of kind holds (1 value, 2 sub-array) may come next at the level
 * open now, and writes the delimiter before it when it is not the first. */
static int writer_item(mk_array_writer *w, unsigned char holds) {
  unsigned char *h;

  if (w->depth == 0)
    return MK_TEXT_ESTATE;
  h = &w->holds[w->depth];
  if (*h != 0 && *h != holds)
    return MK_TEXT_EMIXED;
  if (*h != 0 && mk_buf_addc(w->out, w->delim) != 0)
    return MK_TEXT_ENOMEM;
  *h = holds;
  return 0;
}

int mk_array_writer_open(mk_array_writer *w) {
  int rc;

  if (w->finished)
    return MK_TEXT_ESTATE;
  if (w->depth == MK_TEXT_MAXDEPTH)
    return MK_TEXT_EDEPTH;
  if (w->depth > 0 && (rc = writer_item(w, 2)) != 0)
    return rc;
  if (mk_buf_addc(w->out, '{') != 0)
    return MK_TEXT_ENOMEM;
  w->holds[++w->depth] = 0;
  return 0;
}

int mk_array_writer_close(mk_array_writer *w) {
  if (w->depth == 0)
    return MK_TEXT_ESTATE;
  if (mk_buf_addc(w->out, '}') != 0)
    return MK_TEXT_ENOMEM;
  if (--w->depth == 0)
    w->finished = 1;
  return 0;
}

/* One bare (unquoted) element of kind. */
static int writer_bare(mk_array_writer *w, const char *s, size_t n, unsigned kind) {
  int rc = writer_item(w, 1);

  if (rc != 0)
    return rc;
  if (mk_buf_add(w->out, s, n) != 0)
    return MK_TEXT_ENOMEM;
  w->kinds |= kind;
  return 0;
}

int mk_array_writer_null(mk_array_writer *w) {
  return writer_bare(w, "NULL", 4, 0);
}

int mk_array_writer_bool(mk_array_writer *w, int v) {
  return writer_bare(w, v ? "t" : "f", 1, MK_ARRAY_BOOL);
}

int mk_array_writer_int(mk_array_writer *w, long long v) {
  char num[MK_TEXT_NUMLEN];
  int n = mk_text_int(num, v);

  return writer_bare(w, num, (size_t)n,
                     v >= INT32_MIN && v <= INT32_MAX ? MK_ARRAY_INT4 : MK_ARRAY_INT8);
}

int mk_array_writer_float(mk_array_writer *w, double x) {
  char num[MK_TEXT_NUMLEN];
  int n = mk_text_float(num, x);

  return writer_bare(w, num, (size_t)n, MK_ARRAY_FLOAT);
}

int mk_array_writer_string(mk_array_writer *w, const char *s, size_t n) {
  int rc;

  if (n > 0 && memchr(s, '\0', n) != NULL)
    return MK_TEXT_ENUL;
  if ((rc = writer_item(w, 1)) != 0)
    return rc;
  if (mk_text_quote(w->out, s, n) != 0)
    return MK_TEXT_ENOMEM;
  w->kinds |= MK_ARRAY_OTHER;
  return 0;
}

/* "\\x" and two hex digits per byte, in quotes: the backslash of bytea's hex prefix is
 * escaped inside the quoted element. */
int mk_array_writer_bytea(mk_array_writer *w, const void *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = s;
  size_t i;
  int rc;

  if (n > (SIZE_MAX - 8) / 2)
    return MK_TEXT_ENOMEM;
  if ((rc = writer_item(w, 1)) != 0)
    return rc;
  if (mk_buf_reserve(w->out, 2 * n + 5) != 0)
    return MK_TEXT_ENOMEM;
  /* Cannot fail now: the room is there. */
  (void)mk_buf_add(w->out, "\"\\\\x", 4);
  for (i = 0; i < n; i++) {
    w->out->data[w->out->len++] = hex[p[i] >> 4];
    w->out->data[w->out->len++] = hex[p[i] & 15];
  }
  (void)mk_buf_addc(w->out, '"');
  w->kinds |= MK_ARRAY_OTHER;
  return 0;
}

unsigned mk_array_writer_type(const mk_array_writer *w) {
  unsigned k = w->kinds;

  if (k == MK_ARRAY_INT4)
    return 1007; /* int4[] */
  if (k != 0 && (k & ~(MK_ARRAY_INT4 | MK_ARRAY_INT8)) == 0)
    return 1016; /* int8[] */
  if ((k & MK_ARRAY_FLOAT) && (k & ~(MK_ARRAY_INT4 | MK_ARRAY_INT8 | MK_ARRAY_FLOAT)) == 0)
    return 1022; /* float8[] */
  if (k == MK_ARRAY_BOOL)
    return 1000; /* bool[] */
  return 0;
}

/* mk_sql.c: SQL text helpers declared in mk_sql.h: the :name to $n rewriter, the $n
 * scanner and the routine-name check used by callproc.
 * The rewriter and the scanner share a small lexer (skip_inert) that knows just enough
 * of PostgreSQL's lexical structure to tell where a ':' or '$' is code and where it is
 * text: string constants (with
 * standard_conforming_strings on, the default since 9.1, so backslash is special only
 * in E'..'), quoted identifiers, dollar quotes, and both comment forms. Everything it
 * does not recognise is copied byte for byte, so the server still sees, and reports,
 * the user's exact text. */
#include "mk_sql.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_buf.h"

static int is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* PostgreSQL's ident_start: letters, '_' and every byte >= 0x80 (multibyte text). */
static int is_ident_start(char c) {
  return is_alpha(c) || c == '_' || (unsigned char)c >= 0x80;
}

/* PostgreSQL's ident_cont: ident_start plus digits and '$'. */
static int is_ident_cont(char c) {
  return is_ident_start(c) || is_digit(c) || c == '$';
}

/* Placeholder names are deliberately narrower than SQL identifiers: ASCII only. */
static int is_name_start(char c) {
  return is_alpha(c) || c == '_';
}

static int is_name_cont(char c) {
  return is_name_start(c) || is_digit(c);
}

/* ---- lexer: each skip_* gets i at the construct's first byte and returns the index
 * just after it, or len when the construct is unterminated. ---- */

/* A '..' string or "..." identifier: a doubled quote stands for itself, and with
 * backslash set (E'..' strings) a backslash escapes the next byte, quotes included. */
static size_t skip_quoted(const char *s, size_t len, size_t i, char quote, int backslash) {
  size_t j = i + 1;

  while (j < len) {
    if (backslash && s[j] == '\\') {
      j += 2;
    } else if (s[j] == quote) {
      if (j + 1 < len && s[j + 1] == quote)
        j += 2;
      else
        return j + 1;
    } else {
      j++;
    }
  }
  return len;
}

/* A -- comment runs to the end of the line; the newline itself is ordinary text. */
static size_t skip_line_comment(const char *s, size_t len, size_t i) {
  size_t j = i + 2;

  while (j < len && s[j] != '\n' && s[j] != '\r')
    j++;
  return j;
}

/* Slash-star comments nest in PostgreSQL, unlike in C. */
static size_t skip_block_comment(const char *s, size_t len, size_t i) {
  size_t j = i + 2, depth = 1;

  while (j < len) {
    if (s[j] == '/' && j + 1 < len && s[j + 1] == '*') {
      depth++;
      j += 2;
    } else if (s[j] == '*' && j + 1 < len && s[j + 1] == '/') {
      j += 2;
      if (--depth == 0)
        return j;
    } else {
      j++;
    }
  }
  return len;
}

/* A '$' that may open a dollar quote: $$ or $tag$ where the tag is an identifier
 * without '$' that does not start with a digit, so $1 stays a parameter. The body
 * ends at the first copy of the same delimiter (tags are case-sensitive). When the
 * '$' opens nothing, only the '$' itself is consumed. */
static size_t skip_dollar(const char *s, size_t len, size_t i) {
  size_t j = i + 1, dlen, k;

  if (j < len && is_ident_start(s[j])) {
    while (j < len && is_ident_cont(s[j]) && s[j] != '$')
      j++;
  }
  if (j >= len || s[j] != '$')
    return i + 1;
  dlen = j - i + 1; /* the delimiter s[i..j], both '$' included */
  for (k = j + 1; len - k >= dlen; k++) {
    if (memcmp(s + k, s + i, dlen) == 0)
      return k + dlen;
  }
  return len;
}

/* A word starting with ident_start. Consuming whole words is what keeps a$b one
 * identifier instead of "a" and a dollar quote. A lone E or e right before a quote is
 * the prefix of an escape string, taken together with that string. */
static size_t skip_word(const char *s, size_t len, size_t i) {
  size_t j = i + 1;

  while (j < len && is_ident_cont(s[j]))
    j++;
  if (j == i + 1 && (s[i] == 'E' || s[i] == 'e') && j < len && s[j] == '\'')
    return skip_quoted(s, len, j, '\'', 1);
  return j;
}

/* One lexer step at s[i] (i < len), shared by the rewriter and the $n scanner. When
 * s[i] opens a construct that holds no code the callers care about (a string, quoted
 * identifier, dollar quote, comment or word, including a$1), returns the index just
 * after it. Otherwise s[i] is a byte of code for the caller to look at itself, and i
 * is returned unchanged: that covers ':', a '$' that opens a positional parameter $n,
 * and every other operator, digit or blank byte. Callers step through the text one
 * construct, code byte or token of their own ($n, :name) at a time, so i is never
 * inside a word. */
static size_t skip_inert(const char *s, size_t len, size_t i) {
  char c = s[i];
  char next = i + 1 < len ? s[i + 1] : '\0';

  if (c == '\'' || c == '"') {
    /* U&'..' and U&"..." land here too: the U was read as a word and the & as a
     * plain byte, and a backslash there cannot escape the closing quote. */
    return skip_quoted(s, len, i, c, 0);
  }
  if (c == '-' && next == '-')
    return skip_line_comment(s, len, i);
  if (c == '/' && next == '*')
    return skip_block_comment(s, len, i);
  if (c == '$') {
    /* A '$' that continues an identifier (a$1, a$$x$$) never gets here: skip_word
     * takes it along with the rest of the word. So this '$' starts a token of its
     * own, as in PostgreSQL's lexer, whatever byte precedes it: after a number, a
     * parameter (the rewriter's :name too, which becomes $k), a quote or an operator,
     * $n is a parameter and $$ or $tag$ opens a dollar quote. Checked against
     * PostgreSQL 15: 1$1 and $1$2 lex as separate parameters, 1$$x$$, 1$a$x$a$ and
     * $1$$x$$ as a number or parameter then a dollar-quoted string, $$x$$$1 as a
     * string then a parameter. A number directly followed by a letter (1e5$1,
     * 0x1F$1) needs no care either: PostgreSQL reads the digits plus the whole
     * identifier after them, '$' included, as one "trailing junk" token, and here the
     * digits are plain code bytes and the letter starts a word that takes the '$'. */
    if (is_digit(next))
      return i; /* $n, a parameter; skip_dollar would only consume its '$' anyway. */
    return skip_dollar(s, len, i);
  }
  if (is_ident_start(c))
    return skip_word(s, len, i);
  return i;
}

/* ---- rewriter ---- */

typedef struct rewriter {
  const char *sql;
  mk_buf out;
  mk_sql_name *names;
  size_t count, cap;
  size_t *slots; /* open-addressing hash of names: index + 1, 0 for empty */
  size_t nslots; /* a power of two, more than twice count; 0 before the first name */
} rewriter;

/* FNV-1a of the n bytes at s. */
static size_t name_hash(const char *s, size_t n) {
  size_t h = (size_t)2166136261u, i;

  for (i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= (size_t)16777619u;
  }
  return h;
}

/* Puts name number idx in the hash (there is room). */
static void slot_put(rewriter *r, size_t idx) {
  size_t mask = r->nslots - 1;
  size_t h = name_hash(r->sql + r->names[idx].off, r->names[idx].len) & mask;

  while (r->slots[h] != 0)
    h = (h + 1) & mask;
  r->slots[h] = idx + 1;
}

/* Makes the hash hold at least count + 1 names at under half load. Returns 0 or -1. */
static int slots_grow(rewriter *r) {
  size_t n = r->nslots ? r->nslots : 16, i;
  size_t *slots;

  if (2 * (r->count + 1) < r->nslots)
    return 0;
  while (2 * (r->count + 1) >= n) {
    if (n > SIZE_MAX / 2 / sizeof *slots)
      return -1;
    n *= 2;
  }
  slots = calloc(n, sizeof *slots);
  if (slots == NULL)
    return -1;
  free(r->slots);
  r->slots = slots;
  r->nslots = n;
  for (i = 0; i < r->count; i++)
    slot_put(r, i);
  return 0;
}

/* Stores in *idx the 0-based number of the name at sql[off..off+n), adding the name
 * when it is new. Returns 0, or -1 when memory ran out. */
static int name_index(rewriter *r, size_t off, size_t n, size_t *idx) {
  if (r->nslots) {
    size_t mask = r->nslots - 1, h = name_hash(r->sql + off, n) & mask;

    for (; r->slots[h] != 0; h = (h + 1) & mask) {
      const mk_sql_name *nm = &r->names[r->slots[h] - 1];
      if (nm->len == n && memcmp(r->sql + nm->off, r->sql + off, n) == 0) {
        *idx = r->slots[h] - 1;
        return 0;
      }
    }
  }
  if (slots_grow(r) != 0)
    return -1;
  if (r->count == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 8;
    mk_sql_name *p;
    if (cap > SIZE_MAX / sizeof *p)
      return -1;
    p = realloc(r->names, cap * sizeof *p);
    if (p == NULL)
      return -1;
    r->names = p;
    r->cap = cap;
  }
  r->names[r->count].off = off;
  r->names[r->count].len = n;
  slot_put(r, r->count);
  *idx = r->count++;
  return 0;
}

/* Emits the placeholder for the name at sql[off..off+n) as $k. */
static int emit_placeholder(rewriter *r, size_t off, size_t n) {
  char num[24];
  size_t idx;
  int w;

  if (name_index(r, off, n, &idx) != 0)
    return -1;
  w = snprintf(num, sizeof num, "$%zu", idx + 1);
  return mk_buf_add(&r->out, num, (size_t)w);
}

/* Rewrites :name placeholders (see mk_sql.h). Text between placeholders is copied in
 * runs from the input; on success the buffer's storage becomes out->sql. */
int mk_sql_named_rewrite(const char *sql, size_t len, mk_sql_named *out) {
  rewriter r;
  size_t i = 0, from = 0;

  r.sql = sql;
  mk_buf_init(&r.out);
  r.names = NULL;
  r.count = r.cap = 0;
  r.slots = NULL;
  r.nslots = 0;

  while (i < len) {
    size_t end = skip_inert(sql, len, i);

    if (end != i) {
      i = end;
    } else if (sql[i] == ':' && i + 1 < len && is_name_start(sql[i + 1]) &&
               !(i > 0 && (is_ident_cont(sql[i - 1]) || sql[i - 1] == ':'))) {
      /* Not after ':' (a ::cast), nor after a letter, digit, '_', byte >= 0x80 or
       * '$' (arr[lo:hi], arr[1:n], $1:n, :a:b), where a $k would be glued to what
       * precedes it: lo$1 is one identifier to PostgreSQL and $$1 a dollar quote. */
      size_t j = i + 2;
      while (j < len && is_name_cont(sql[j]))
        j++;
      if (mk_buf_add(&r.out, sql + from, i - from) != 0 ||
          emit_placeholder(&r, i + 1, j - i - 1) != 0)
        goto oom;
      i = from = j;
    } else {
      i++;
    }
  }
  if (mk_buf_add(&r.out, sql + from, len - from) != 0 || mk_buf_cstr(&r.out) == NULL)
    goto oom;
  free(r.slots);
  out->sql = r.out.data;
  out->sql_len = r.out.len;
  out->names = r.names;
  out->count = r.count;
  return 0;

oom:
  mk_buf_free(&r.out);
  free(r.names);
  free(r.slots);
  out->sql = NULL;
  out->sql_len = 0;
  out->names = NULL;
  out->count = 0;
  return -1;
}

/* Frees what mk_sql_named_rewrite gave out and zeroes it, so a second call is harmless. */
void mk_sql_named_free(mk_sql_named *n) {
  free(n->sql);
  free(n->names);
  n->sql = NULL;
  n->sql_len = 0;
  n->names = NULL;
  n->count = 0;
}

/* ---- positional parameters ---- */

/* Reports each $n outside literals and comments (see mk_sql.h). skip_inert hands back
 * a '$' only when a digit follows it (a '$' inside a word went with the word), so
 * every '$' seen here opens a parameter; all its digits belong to the token, and a
 * '$' right after them starts the next token ($1$2 is two parameters). */
int mk_sql_scan_positional(const char *sql, size_t len, mk_sql_placeholder_fn fn, void *ud) {
  size_t i = 0;

  while (i < len) {
    size_t end = skip_inert(sql, len, i);

    if (end != i) {
      i = end;
    } else if (sql[i] == '$') {
      size_t j = i + 1;
      unsigned number = 0;
      int rc;

      while (j < len && is_digit(sql[j])) {
        if (j - i <= 5) /* at most 5 digits: cannot overflow */
          number = number * 10 + (unsigned)(sql[j] - '0');
        j++;
      }
      if (j - i - 1 > 5 || number > 65535)
        number = 0;
      rc = fn(ud, number, i, j - i);
      if (rc != 0)
        return rc;
      i = j;
    } else {
      i++;
    }
  }
  return 0;
}

typedef struct max_scan {
  int max;
  size_t bad_off, bad_len;
} max_scan;

static int max_one(void *ud, unsigned number, size_t off, size_t len) {
  max_scan *m = ud;

  if (number == 0) {
    m->bad_off = off;
    m->bad_len = len;
    return 1;
  }
  if ((int)number > m->max)
    m->max = (int)number;
  return 0;
}

/* The highest $n (see mk_sql.h): the scanner stops at the first invalid number. */
int mk_sql_max_positional(const char *sql, size_t len, size_t *bad_off, size_t *bad_len) {
  max_scan m = {0, 0, 0};

  if (mk_sql_scan_positional(sql, len, max_one, &m) != 0) {
    *bad_off = m.bad_off;
    *bad_len = m.bad_len;
    return -1;
  }
  return m.max;
}

/* ---- routine names ---- */

/* Index just after one name part starting at s[i], or 0 when it is not a valid part
 * (0 can never be a valid end, since a part is at least one byte long). */
static size_t routine_part(const char *s, size_t len, size_t i) {
  size_t j = i + 1, bytes = 0; /* bytes: of the identifier a quoted part stands for */

  if (s[i] == '"') {
    for (;;) {
      if (j >= len || s[j] == '\0')
        return 0;
      if (s[j] == '"') {
        if (j + 1 < len && s[j + 1] == '"') {
          j += 2;
          if (++bytes > MK_SQL_NAME_MAX)
            return 0;
          continue;
        }
        /* "" alone is the empty identifier, which PostgreSQL rejects. */
        return j == i + 1 ? 0 : j + 1;
      }
      if (++bytes > MK_SQL_NAME_MAX)
        return 0;
      j++;
    }
  }
  if (!is_name_start(s[i]))
    return 0;
  while (j < len && (is_name_cont(s[j]) || s[j] == '$'))
    j++;
  return j - i > MK_SQL_NAME_MAX ? 0 : j;
}

/* Checks s against the grammar in mk_sql.h: no whitespace, one to three parts. */
int mk_sql_is_routine_name(const char *s, size_t len) {
  size_t i = 0;
  int parts;

  for (parts = 1; parts <= 3; parts++) {
    if (i >= len || (i = routine_part(s, len, i)) == 0)
      return 0;
    if (i == len)
      return 1;
    if (s[i] != '.')
      return 0;
    i++;
  }
  return 0;
}

/* ---- pipeline check ---- */

static int word_is(const char *s, size_t len, size_t i, size_t j, const char *w) {
  size_t n = strlen(w), k;
  if (j - i != n || j > len) return 0;
  for (k = 0; k < n; k++)
    if ((s[i + k] | 0x20) != w[k]) return 0;
  return 1;
}

int mk_sql_pipelinable(const char *sql, size_t len) {
  size_t i = 0, j;
  int seen_code = 0, ended = 0;
  while (i < len) {
    char c = sql[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      i++;
      continue;
    }
    j = skip_inert(sql, len, i);
    if (j > i && ((c == '-' && i + 1 < len && sql[i + 1] == '-') || (c == '/' && i + 1 < len && sql[i + 1] == '*'))) {
      i = j; /* a comment is no code */
      continue;
    }
    if (ended) return 0; /* code after a ';': a second statement */
    if (c == ';') {
      ended = 1;
      i++;
      continue;
    }
    if (!seen_code && j > i && word_is(sql, len, i, j, "copy")) return 0;
    seen_code = 1;
    i = j > i ? j : i + 1;
  }
  return 1;
}

int mk_sql_starts_with_keyword(const char *s, const char *kw) {
  size_t n = strlen(kw), i;
  for (;;) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v') s++;
    if (s[0] == '-' && s[1] == '-') {
      while (*s && *s != '\n') s++;
    } else if (s[0] == '/' && s[1] == '*') {
      const char *end = strstr(s + 2, "*/");
      if (!end) return 0;
      s = end + 2;
    } else {
      break;
    }
  }
  for (i = 0; i < n; i++)
    if (s[i] == '\0' || (s[i] | 0x20) != kw[i]) return 0;
  return !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9') ||
           s[n] == '_' || s[n] == '$' || (unsigned char)s[n] >= 0x80);
}

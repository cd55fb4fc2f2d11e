/* test_text_sql.c: standalone TAP tests for the connection-free helpers in mk_buf,
 * mk_text (parsers and the array writer), mk_sql (the pipeline check included) and
 * mk_stmtcache (the statement cache: LRU order, eviction, keys, forget, ids) and mk_copy
 * (COPY text values), plus a
 * deterministic random-input pass over every parser.
 * Every input is copied into a buffer of exactly its length (no NUL after it), so a
 * read past the end is caught by AddressSanitizer or valgrind. Prints one TAP line per
 * check, then the plan, and exits 1 if any check failed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_buf.h"
#include "mk_copy.h"
#include "mk_sql.h"
#include "mk_stmtcache.h"
#include "mk_text.h"

static int ntests, nfailed;

static void check(int ok, const char *desc) {
  ntests++;
  if (!ok)
    nfailed++;
  printf("%sok %d - %s\n", ok ? "" : "not ", ntests, desc);
}

/* n uninitialised bytes with nothing after them, for scratch and output areas; never
 * NULL (aborts instead, since a test that cannot allocate proves nothing). */
static char *alloc_exact(size_t n) {
  char *p = malloc(n ? n : 1);
  if (p == NULL) {
    fputs("out of memory\n", stderr);
    exit(2);
  }
  return p;
}

/* A malloc'd copy of the n bytes at s with nothing after them. */
static char *exact_copy(const char *s, size_t n) {
  char *p = alloc_exact(n);
  if (n)
    memcpy(p, s, n);
  return p;
}

/* Appends for logs; a failed append only makes the comparison fail. */
static void log_add(mk_buf *b, const char *s, size_t n) {
  (void)mk_buf_add(b, s, n);
}

static int log_is(mk_buf *b, const char *want) {
  const char *got = mk_buf_cstr(b);
  int ok = got != NULL && strcmp(got, want) == 0;
  if (!ok)
    printf("# got  '%s'\n# want '%s'\n", got ? got : "(null)", want);
  return ok;
}

/* ---- array recording sink: "{" and "}" for open/close, "<s>" for an element, "N" for
 * a null. stop_at makes the n-th element callback return 42. ---- */

typedef struct arr_log {
  mk_buf b;
  int elems, stop_at, open_rc, close_rc;
} arr_log;

static int rec_open(void *ud) {
  arr_log *l = ud;
  log_add(&l->b, "{", 1);
  return l->open_rc;
}

static int rec_close(void *ud) {
  arr_log *l = ud;
  log_add(&l->b, "}", 1);
  return l->close_rc;
}

static int rec_elem(void *ud, const char *s, size_t len, int is_null) {
  arr_log *l = ud;
  if (is_null) {
    log_add(&l->b, "N", 1);
  } else {
    log_add(&l->b, "<", 1);
    log_add(&l->b, s, len);
    log_add(&l->b, ">", 1);
  }
  return ++l->elems == l->stop_at ? 42 : 0;
}

static int run_array(const char *in, char delim, arr_log *l) {
  size_t n = strlen(in);
  char *text = exact_copy(in, n), *scratch = alloc_exact(n);
  mk_array_sink sink = {rec_open, rec_close, rec_elem, l};
  int rc = mk_array_parse(text, n, delim, scratch, &sink);
  free(text);
  free(scratch);
  return rc;
}

/* want_log NULL: only the return code is checked. */
static void check_array(const char *in, char delim, int want_rc, const char *want_log,
                        const char *desc) {
  arr_log l = {{NULL, 0, 0}, 0, 0, 0, 0};
  int rc = run_array(in, delim, &l);
  int ok = rc == want_rc && (want_log == NULL || log_is(&l.b, want_log));
  if (rc != want_rc)
    printf("# rc %d, want %d\n", rc, want_rc);
  check(ok, desc);
  mk_buf_free(&l.b);
}

/* ---- hstore recording: "<k>=<v>;" or "<k>=N;" per pair ---- */

typedef struct hs_log {
  mk_buf b;
  int pairs, stop_at;
} hs_log;

static int rec_pair(void *ud, const char *k, size_t kl, const char *v, size_t vl,
                    int vnull) {
  hs_log *l = ud;
  log_add(&l->b, "<", 1);
  log_add(&l->b, k, kl);
  log_add(&l->b, ">=", 2);
  if (vnull) {
    log_add(&l->b, "N", 1);
  } else {
    log_add(&l->b, "<", 1);
    log_add(&l->b, v, vl);
    log_add(&l->b, ">", 1);
  }
  log_add(&l->b, ";", 1);
  return ++l->pairs == l->stop_at ? 7 : 0;
}

static void check_hstore_stop(const char *in, int stop_at, int want_rc,
                              const char *want_log, const char *desc) {
  hs_log l = {{NULL, 0, 0}, 0, stop_at};
  size_t n = strlen(in);
  char *text = exact_copy(in, n), *scratch = alloc_exact(n);
  int rc = mk_hstore_parse(text, n, scratch, rec_pair, &l);
  int ok = rc == want_rc && (want_log == NULL || log_is(&l.b, want_log));
  if (rc != want_rc)
    printf("# rc %d, want %d\n", rc, want_rc);
  check(ok, desc);
  free(text);
  free(scratch);
  mk_buf_free(&l.b);
}

static void check_hstore(const char *in, int want_rc, const char *want_log,
                         const char *desc) {
  check_hstore_stop(in, 0, want_rc, want_log, desc);
}

/* ---- bytea ---- */

static void check_bytea(const char *in, size_t n, ssize_t want_rc, const char *want,
                        const char *desc) {
  char *text = exact_copy(in, n), *out = alloc_exact(n);
  ssize_t rc = mk_bytea_decode(text, n, out);
  int ok = rc == want_rc && (rc < 0 || memcmp(out, want, (size_t)rc) == 0);
  if (rc != want_rc)
    printf("# rc %zd, want %zd\n", rc, want_rc);
  check(ok, desc);
  free(text);
  free(out);
}

#define BYTEA(lit, want_rc, want, desc) check_bytea(lit, sizeof(lit) - 1, want_rc, want, desc)

/* ---- SQL rewriting: names are logged joined by ',' ---- */

static void check_sql(const char *in, const char *want_sql, const char *want_names,
                      const char *desc) {
  size_t n = strlen(in), i;
  char *text = exact_copy(in, n);
  mk_sql_named r;
  mk_buf names;
  int ok;

  mk_buf_init(&names);
  if (mk_sql_named_rewrite(text, n, &r) != 0) {
    check(0, desc);
    free(text);
    return;
  }
  for (i = 0; i < r.count; i++) {
    if (i)
      log_add(&names, ",", 1);
    log_add(&names, text + r.names[i].off, r.names[i].len);
  }
  ok = r.sql != NULL && r.sql_len == strlen(want_sql) && strcmp(r.sql, want_sql) == 0;
  if (!ok)
    printf("# got  '%s'\n# want '%s'\n", r.sql ? r.sql : "(null)", want_sql);
  ok = log_is(&names, want_names) && ok;
  check(ok, desc);
  mk_sql_named_free(&r);
  mk_buf_free(&names);
  free(text);
}

/* ---- positional scanning: "<number>@<off>+<len>;" per placeholder; stop_at makes the
 * n-th callback return 42. ---- */

typedef struct pos_log {
  mk_buf b;
  int calls, stop_at;
} pos_log;

static int rec_pos(void *ud, unsigned number, size_t off, size_t len) {
  pos_log *l = ud;
  char item[64];
  int w = snprintf(item, sizeof item, "%u@%zu+%zu;", number, off, len);
  log_add(&l->b, item, (size_t)w);
  return ++l->calls == l->stop_at ? 42 : 0;
}

static void check_pos_stop(const char *in, int stop_at, int want_rc, const char *want_log,
                           const char *desc) {
  size_t n = strlen(in);
  char *text = exact_copy(in, n);
  pos_log l;
  int rc, ok;

  mk_buf_init(&l.b);
  l.calls = 0;
  l.stop_at = stop_at;
  rc = mk_sql_scan_positional(text, n, rec_pos, &l);
  if (rc != want_rc)
    printf("# rc %d, want %d\n", rc, want_rc);
  ok = log_is(&l.b, want_log) && rc == want_rc;
  check(ok, desc);
  mk_buf_free(&l.b);
  free(text);
}

static void check_pos(const char *in, const char *want_log, const char *desc) {
  check_pos_stop(in, 0, 0, want_log, desc);
}

static void check_routine(const char *s, size_t n, int want) {
  char desc[160];
  char *text = exact_copy(s, n);
  size_t i, k = 0;

  /* Show the name printably: the NUL case would otherwise cut the description. */
  for (i = 0; i < n && k < 100; i++)
    k += (size_t)snprintf(desc + k, sizeof desc - k, s[i] ? "%c" : "\\0", s[i]);
  snprintf(desc + k, sizeof desc - k, " %s as a routine name", want ? "accepted" : "rejected");
  check(mk_sql_is_routine_name(text, n) == want, desc);
  free(text);
}

/* ---- tests ---- */

static void test_buf(void) {
  mk_buf b;
  const char *s;
  size_t i;
  int ok = 1;

  mk_buf_init(&b);
  s = mk_buf_cstr(&b);
  check(s != NULL && *s == '\0' && b.len == 0, "buf: cstr of an empty buffer is \"\"");
  check(mk_buf_add(&b, NULL, 0) == 0 && b.len == 0, "buf: adding nothing succeeds");
  ok = mk_buf_adds(&b, "ab") == 0 && mk_buf_addc(&b, 'c') == 0 &&
       mk_buf_add(&b, "d\0e", 3) == 0;
  check(ok && b.len == 6 && memcmp(b.data, "abcd\0e", 7) == 0,
        "buf: adds/addc/add append bytes (NUL included) and keep a NUL after them");
  for (i = 0; i < 100000 && ok; i++)
    ok = mk_buf_addc(&b, (char)('a' + i % 26)) == 0;
  check(ok && b.len == 100006 && b.cap > b.len && b.data[b.len] == '\0' &&
            b.data[100005] == (char)('a' + 99999 % 26),
        "buf: grows across many appends");
  check(mk_buf_reserve(&b, SIZE_MAX) == -1 && b.len == 100006,
        "buf: an impossible reserve fails and leaves the contents");
  mk_buf_free(&b);
  check(b.data == NULL && b.len == 0 && b.cap == 0, "buf: free empties the buffer");
  check(mk_buf_adds(&b, "x") == 0 && strcmp(mk_buf_cstr(&b), "x") == 0,
        "buf: a freed buffer is reusable");
  mk_buf_free(&b);
}

static void test_array(void) {
  char deep[] = "{{{{{{1}}}}}}";
  char deeper[] = "{{{{{{{1}}}}}}}";
  arr_log l = {{NULL, 0, 0}, 0, 0, 0, 0};
  int rc;

  check_array("{1,2,3}", ',', 0, "{<1><2><3>}", "array: plain elements");
  check_array("{}", ',', 0, "{}", "array: {} opens and closes with no elements");
  check_array("  {  }  ", ',', 0, "{}", "array: whitespace around and inside {}");
  check_array("{\"a \\\"b\\\"\",NULL,null,\"NULL\",NuLl}", ',', 0, "{<a \"b\">NN<NULL>N}",
              "array: quoted escapes; unquoted NULL in any case is null, quoted is text");
  check_array("{  a b  ,\tc\n}", ',', 0, "{<a b><c>}",
              "array: unquoted elements are trimmed, inner spaces kept");
  check_array("{a\\ , \\ b}", ',', 0, "{<a >< b>}", "array: escaped whitespace is not trimmed");
  check_array("{N\\ULL,\\NULL}", ',', 0, "{<NULL><NULL>}",
              "array: NULL spelled with an escape is the string");
  check_array("{NULLx,NUL,xNULL}", ',', 0, "{<NULLx><NUL><xNULL>}",
              "array: only the exact word NULL is null");
  check_array("{a\\,b,c\\}d,e\\\"f,g\\{h}", ',', 0, "{<a,b><c}d><e\"f><g{h>}",
              "array: backslash escapes delim, braces and quotes in unquoted elements");
  check_array("{\"a\\\\b\",\"x\\y\"}", ',', 0, "{<a\\b><xy>}",
              "array: backslash escapes any byte in quoted elements");
  check_array("{\"\",\"\"}", ',', 0, "{<><>}", "array: empty quoted strings");
  check_array("{ \"a\" , \"b\" }", ',', 0, "{<a><b>}", "array: whitespace around quoted elements");
  check_array("{{1,2},{3,4}}", ',', 0, "{{<1><2>}{<3><4>}}", "array: two dimensions");
  check_array("{{{a}},{{NULL}}}", ',', 0, "{{{<a>}}{{N}}}", "array: three dimensions with a null");
  check_array("[1:2][0:1]={{1,2},{3,4}}", ',', 0, "{{<1><2>}{<3><4>}}",
              "array: dimension decoration is skipped");
  check_array(" [-1:0] = {a,b}", ',', 0, "{<a><b>}", "array: negative bound, spaces around =");
  check_array("[3]={a,b,c}", ',', 0, "{<a><b><c>}", "array: decoration with the upper bound only");
  check_array("[1:2]{1,2}", ',', MK_TEXT_EPARSE, NULL, "array: decoration without = is malformed");
  check_array("[1:2={1,2}", ',', MK_TEXT_EPARSE, NULL, "array: unclosed decoration is malformed");
  check_array("[]={}", ',', MK_TEXT_EPARSE, NULL, "array: empty decoration is malformed");
  check_array("[1:x]={1}", ',', MK_TEXT_EPARSE, NULL, "array: non-numeric bound is malformed");
  check_array("[1:1][1:1][1:1][1:1][1:1][1:1][1:1]={{{{{{{1}}}}}}}", ',', MK_TEXT_EPARSE, NULL,
              "array: more than MK_TEXT_MAXDEPTH dimensions in the decoration");
  check_array(deep, ',', 0, "{{{{{{<1>}}}}}}", "array: depth MK_TEXT_MAXDEPTH is accepted");
  check_array(deeper, ',', MK_TEXT_EPARSE, NULL, "array: depth MK_TEXT_MAXDEPTH+1 is malformed");
  check_array("{1,2}  \n", ',', 0, "{<1><2>}", "array: trailing whitespace is fine");
  check_array("{1,2} x", ',', MK_TEXT_EPARSE, NULL, "array: trailing garbage is malformed");
  check_array("{1}{2}", ',', MK_TEXT_EPARSE, NULL, "array: a second top-level array is malformed");
  check_array("{1,,2}", ',', MK_TEXT_EPARSE, NULL, "array: empty element is malformed");
  check_array("{1,}", ',', MK_TEXT_EPARSE, NULL, "array: trailing delimiter is malformed");
  check_array("{,1}", ',', MK_TEXT_EPARSE, NULL, "array: leading delimiter is malformed");
  check_array("{\"abc", ',', MK_TEXT_EPARSE, NULL, "array: unterminated quote is malformed");
  check_array("{1,2", ',', MK_TEXT_EPARSE, NULL, "array: missing } is malformed");
  check_array("{{1,2}", ',', MK_TEXT_EPARSE, NULL, "array: missing outer } is malformed");
  check_array("", ',', MK_TEXT_EPARSE, NULL, "array: empty input is malformed");
  check_array("1,2", ',', MK_TEXT_EPARSE, NULL, "array: no braces is malformed");
  check_array("{a\"b\"}", ',', MK_TEXT_EPARSE, NULL, "array: quote inside an unquoted element");
  check_array("{a{b}}", ',', MK_TEXT_EPARSE, NULL, "array: { inside an unquoted element");
  check_array("{\"a\" b}", ',', MK_TEXT_EPARSE, NULL, "array: text after a quoted element");
  check_array("{a\\}", ',', MK_TEXT_EPARSE, NULL, "array: escaped final } leaves it unclosed");
  check_array("{a\\", ',', MK_TEXT_EPARSE, NULL, "array: backslash at the end of input");
  check_array("{1,{2}}", ',', MK_TEXT_EPARSE, NULL, "array: scalar then sub-array is malformed");
  check_array("{{1},2}", ',', MK_TEXT_EPARSE, NULL, "array: sub-array then scalar is malformed");
  check_array("{(1,2),(3,4);(5,6),(7,8)}", ';', 0, "{<(1,2),(3,4)><(5,6),(7,8)>}",
              "array: box arrays use ; as the delimiter");
  check_array("{\xc3\xa9,\"\xc3\xbc\"}", ',', 0, "{<\xc3\xa9><\xc3\xbc>}",
              "array: bytes >= 0x80 pass through");
  check_array("{1}", '{', MK_TEXT_EPARSE, NULL, "array: a brace as delimiter is refused");

  l.stop_at = 0;
  l.open_rc = 9;
  rc = run_array("{{a}}", ',', &l);
  check(rc == 9 && log_is(&l.b, "{"), "array: an open callback's value stops the parse");
  mk_buf_free(&l.b);
  l.open_rc = 0;
  l.stop_at = 2;
  rc = run_array("{a,b,c}", ',', &l);
  check(rc == 42 && log_is(&l.b, "{<a><b>"), "array: an element callback's value stops the parse");
  mk_buf_free(&l.b);
  l.stop_at = 0;
  l.close_rc = 5;
  rc = run_array("{{a},{b}}", ',', &l);
  check(rc == 5 && log_is(&l.b, "{{<a>}"), "array: a close callback's value stops the parse");
  mk_buf_free(&l.b);
}

static void test_hstore(void) {
  check_hstore("\"a\"=>\"1\", \"b\"=>NULL", 0, "<a>=<1>;<b>=N;", "hstore: server output form");
  check_hstore("", 0, "", "hstore: empty string is zero pairs");
  check_hstore(" \n ", 0, "", "hstore: whitespace only is zero pairs");
  check_hstore("\"k\\\"q\"=>\"v\\\\w\"", 0, "<k\"q>=<v\\w>;", "hstore: backslash escapes in quotes");
  check_hstore("\"a\"=>\"NULL\"", 0, "<a>=<NULL>;", "hstore: quoted NULL is the string");
  check_hstore("a=>1,b=>null, c=>x\\ y", 0, "<a>=<1>;<b>=N;<c>=<x y>;",
               "hstore: unquoted words, null in any case, escapes");
  check_hstore("NULL=>x", 0, "<NULL>=<x>;", "hstore: a key spelled NULL is a string");
  check_hstore("  \"a\"  =>  \"b\"  ", 0, "<a>=<b>;", "hstore: whitespace around tokens");
  check_hstore("\"a\"=>\"\",\"\"=>\"b\"", 0, "<a>=<>;<>=<b>;", "hstore: empty key and value");
  check_hstore("\"a\"=>\"1\",", 0, "<a>=<1>;", "hstore: trailing comma is accepted");
  check_hstore("\"a, b\"=>\"=>\"", 0, "<a, b>=<=>>;", "hstore: separators inside quotes");
  check_hstore("\"a\"=>", MK_TEXT_EPARSE, NULL, "hstore: missing value");
  check_hstore("\"a\"", MK_TEXT_EPARSE, NULL, "hstore: missing =>");
  check_hstore("\"a\"=\"b\"", MK_TEXT_EPARSE, NULL, "hstore: = without >");
  check_hstore("\"a\"= >\"b\"", MK_TEXT_EPARSE, NULL, "hstore: space inside =>");
  check_hstore("\"a\"=>\"b\" \"c\"=>\"d\"", MK_TEXT_EPARSE, NULL, "hstore: missing comma");
  check_hstore("\"a\"=>\"b\",,\"c\"=>\"d\"", MK_TEXT_EPARSE, NULL, "hstore: double comma");
  check_hstore("\"a", MK_TEXT_EPARSE, NULL, "hstore: unterminated key");
  check_hstore("\"a\"=>\"b", MK_TEXT_EPARSE, NULL, "hstore: unterminated value");
  check_hstore("=>b", MK_TEXT_EPARSE, NULL, "hstore: missing key");
  check_hstore("a=>b\\", MK_TEXT_EPARSE, NULL, "hstore: backslash at the end of input");
  check_hstore_stop("a=>1,b=>2,c=>3", 2, 7, "<a>=<1>;<b>=<2>;", "hstore: callback value stops the parse");
}

static void test_bytea(void) {
  BYTEA("", 0, "", "bytea: empty escape-format input");
  BYTEA("\\x", 0, "", "bytea: hex with no digits");
  BYTEA("\\x4142", 2, "AB", "bytea: hex");
  BYTEA("\\xDEADbeef", 4, "\xde\xad\xbe\xef", "bytea: hex digits in either case");
  BYTEA("\\x00ff", 2, "\x00\xff", "bytea: hex NUL and 0xff");
  BYTEA("\\x414", -1, "", "bytea: odd number of hex digits");
  BYTEA("\\x4g", -1, "", "bytea: non-hex digit");
  BYTEA("\\x 41", -1, "", "bytea: space in hex");
  BYTEA("\\X41", -1, "", "bytea: \\X is not the hex prefix");
  BYTEA("abc", 3, "abc", "bytea: escape format, plain bytes");
  BYTEA("A\\102\\\\", 3, "AB\\", "bytea: escape format octal and backslash");
  BYTEA("\\000\\377a", 3, "\x00\xff" "a", "bytea: octal NUL and 0377");
  BYTEA("a\\\\\\\\b", 4, "a\\\\b", "bytea: two escaped backslashes");
  BYTEA("\\400", -1, "", "bytea: octal above 0377");
  BYTEA("\\18", -1, "", "bytea: non-octal digit");
  BYTEA("\\12", -1, "", "bytea: truncated octal");
  BYTEA("ab\\", -1, "", "bytea: lone backslash at the end");
  BYTEA("\\n", -1, "", "bytea: backslash before a letter");
}

static void test_quote(void) {
  mk_buf b;
  int ok;

  mk_buf_init(&b);
  ok = mk_text_quote(&b, "abc", 3) == 0;
  check(ok && log_is(&b, "\"abc\""), "quote: plain text");
  ok = mk_buf_adds(&b, ",") == 0 && mk_text_quote(&b, "a\"b\\c", 5) == 0;
  check(ok && log_is(&b, "\"abc\",\"a\\\"b\\\\c\""), "quote: appends, escaping \" and \\");
  mk_buf_free(&b);
  check(mk_text_quote(&b, NULL, 0) == 0 && log_is(&b, "\"\""), "quote: empty string");
  mk_buf_free(&b);
  ok = mk_text_quote(&b, "a\0b", 3) == 0;
  check(ok && b.len == 5 && memcmp(b.data, "\"a\0b\"", 5) == 0, "quote: NUL bytes are kept");
  mk_buf_free(&b);
}

/* ---- the array writer: each script is a string of steps, one letter each:
 * '{' open, '}' close, 'N' null, 't'/'f' booleans, 'i' the next integer of ints, 'd' the
 * next double of dbls, 's' the next string of strs, 'b' the next bytea of strs. Stops at
 * the first error, whose code is returned. ---- */

typedef struct wscript {
  const char *steps;
  const long long *ints;
  const double *dbls;
  const char *const *strs;
} wscript;

static int run_writer(const wscript *sc, char delim, mk_buf *out, unsigned *type) {
  mk_array_writer w;
  size_t i;
  int ni = 0, nd = 0, ns = 0, rc = 0;

  mk_array_writer_init(&w, out, delim);
  for (i = 0; sc->steps[i] && rc == 0; i++) {
    switch (sc->steps[i]) {
    case '{': rc = mk_array_writer_open(&w); break;
    case '}': rc = mk_array_writer_close(&w); break;
    case 'N': rc = mk_array_writer_null(&w); break;
    case 't': rc = mk_array_writer_bool(&w, 1); break;
    case 'f': rc = mk_array_writer_bool(&w, 0); break;
    case 'i': rc = mk_array_writer_int(&w, sc->ints[ni++]); break;
    case 'd': rc = mk_array_writer_float(&w, sc->dbls[nd++]); break;
    case 's': rc = mk_array_writer_string(&w, sc->strs[ns], strlen(sc->strs[ns])); ns++; break;
    case 'b': rc = mk_array_writer_bytea(&w, sc->strs[ns], strlen(sc->strs[ns])); ns++; break;
    default: rc = 99;
    }
  }
  if (type)
    *type = mk_array_writer_type(&w);
  return rc;
}

/* want_text NULL: only the code (and type) are checked. want_type ~0u: not checked. */
static void check_writer(const wscript *sc, int want_rc, const char *want_text,
                         unsigned want_type, const char *desc) {
  mk_buf b;
  unsigned type = 0;
  int rc, ok;

  mk_buf_init(&b);
  rc = run_writer(sc, ',', &b, &type);
  ok = rc == want_rc && (want_text == NULL || log_is(&b, want_text)) &&
       (want_type == ~0u || type == want_type);
  if (rc != want_rc)
    printf("# rc %d, want %d\n", rc, want_rc);
  if (want_type != ~0u && type != want_type)
    printf("# type %u, want %u\n", type, want_type);
  check(ok, desc);
  mk_buf_free(&b);
}

/* The writer's output, parsed back, gives this log (see check_array). */
static void check_writer_parses(const wscript *sc, char delim, const char *want_log,
                                const char *desc) {
  mk_buf b;
  arr_log l = {{NULL, 0, 0}, 0, 0, 0, 0};
  int rc;

  mk_buf_init(&b);
  rc = run_writer(sc, delim, &b, NULL);
  if (rc == 0) {
    char *text = exact_copy(b.data, b.len), *scratch = alloc_exact(b.len);
    mk_array_sink sink = {rec_open, rec_close, rec_elem, &l};
    rc = mk_array_parse(text, b.len, delim, scratch, &sink);
    free(text);
    free(scratch);
  }
  check(rc == 0 && log_is(&l.b, want_log), desc);
  mk_buf_free(&b);
  mk_buf_free(&l.b);
}

static void test_writer(void) {
  static const long long ints[] = {1, -2, 2147483647, -2147483648LL, 2147483648LL,
                                   -9223372036854775807LL - 1, 9223372036854775807LL};
  static const long long big[] = {1, 2147483648LL};
  static const long long small[] = {-2147483648LL, 2147483647};
  static const long long below[] = {-2147483649LL};
  static const double dbls[] = {1.5, -0.0, 0.1, 1e300, 5e-324};
  static const char *const strs[] = {"a", "say \"hi\"", "back\\slash", "", "NULL", " x ", "a,b;c",
                                     "{}"};
  static const char *const raw[] = {"\x01\xff", "", "AB"};
  /* Scripts for check_writer: the steps and the values they take, then the code, the text
   * (NULL: not checked) and the array type (~0u: not checked) the writer must give. */
  static const struct {
    wscript sc;
    int rc;
    const char *text;
    unsigned type;
    const char *desc;
  } cases[] = {
    {{"{}", ints, dbls, strs}, 0, "{}", 0, "writer: an empty array is untyped"},
    {{"{iii}", ints, dbls, strs}, 0, "{1,-2,2147483647}", 1007,
     "writer: integers within 32 bits are int4[]"},
    {{"{iiiiiii}", ints, dbls, strs}, 0,
     "{1,-2,2147483647,-2147483648,2147483648,-9223372036854775808,9223372036854775807}", 1016,
     "writer: one integer beyond 32 bits makes int8[]"},
    {{"{{i}{i}}", big, dbls, strs}, 0, "{{1},{2147483648}}", 1016, "writer: int8[] in a sub-array"},
    {{"{Nii}", small, dbls, strs}, 0, "{NULL,-2147483648,2147483647}", 1007, "writer: int4 bounds, NULL"},
    {{"{i}", below, dbls, strs}, 0, "{-2147483649}", 1016, "writer: just below int4"},
    {{"{ddddd}", ints, dbls, strs}, 0,
     "{1.5,-0,0.10000000000000001,1.0000000000000001e+300,4.9406564584124654e-324}", 1022,
     "writer: floats with 17 significant digits"},
    {{"{id}", ints, dbls, strs}, 0, "{1,1.5}", 1022, "writer: integers and floats are float8[]"},
    {{"{tfN}", ints, dbls, strs}, 0, "{t,f,NULL}", 1000, "writer: booleans are bool[]"},
    {{"{ti}", ints, dbls, strs}, 0, "{t,1}", 0, "writer: booleans with numbers are untyped"},
    {{"{NN}", ints, dbls, strs}, 0, "{NULL,NULL}", 0, "writer: NULLs only are untyped"},
    {{"{ssssssss}", ints, dbls, strs}, 0,
     "{\"a\",\"say \\\"hi\\\"\",\"back\\\\slash\",\"\",\"NULL\",\" x \",\"a,b;c\",\"{}\"}", 0,
     "writer: strings are quoted, quotes and backslashes escaped"},
    {{"{si}", ints, dbls, strs}, 0, "{\"a\",1}", 0, "writer: strings with numbers are untyped"},
    {{"{bbb}", ints, dbls, raw}, 0, "{\"\\\\x01ff\",\"\\\\x\",\"\\\\x4142\"}", 0,
     "writer: bytea elements in hex form"},
    {{"{{{{{{i}}}}}}", ints, dbls, strs}, 0, "{{{{{{1}}}}}}", 1007, "writer: MK_TEXT_MAXDEPTH levels"},
    {{"{{{{{{{", ints, dbls, strs}, MK_TEXT_EDEPTH, "{{{{{{", ~0u, "writer: one level more is EDEPTH"},
    {{"{i{", ints, dbls, strs}, MK_TEXT_EMIXED, NULL, ~0u, "writer: a sub-array after a value is EMIXED"},
    {{"{{}i", ints, dbls, strs}, MK_TEXT_EMIXED, NULL, ~0u, "writer: a value after a sub-array is EMIXED"},
    {{"{{i}{N}{}}", ints, dbls, strs}, 0, "{{1},{NULL},{}}", 1007,
     "writer: sub-arrays, the delimiter between them"},
    {{"i", ints, dbls, strs}, MK_TEXT_ESTATE, "", ~0u, "writer: an element outside any array is ESTATE"},
    {{"}", ints, dbls, strs}, MK_TEXT_ESTATE, "", ~0u, "writer: a close with none open is ESTATE"},
    {{"{}{", ints, dbls, strs}, MK_TEXT_ESTATE, "{}", ~0u, "writer: nothing after the outermost close"},
    {{"{}N", ints, dbls, strs}, MK_TEXT_ESTATE, "{}", ~0u, "writer: no element after the outermost close"},
  };
  char nan_inf[3][MK_TEXT_NUMLEN];
  double special[3];
  mk_buf b;
  mk_array_writer w;
  wscript sc;
  size_t i;

  memset(&sc, 0, sizeof sc);
  sc.ints = ints;
  sc.dbls = dbls;
  sc.strs = strs;

  for (i = 0; i < sizeof cases / sizeof *cases; i++)
    check_writer(&cases[i].sc, cases[i].rc, cases[i].text, cases[i].type, cases[i].desc);

  mk_buf_init(&b);
  mk_array_writer_init(&w, &b, ',');
  check(mk_array_writer_open(&w) == 0 && mk_array_writer_string(&w, "a\0b", 3) == MK_TEXT_ENUL &&
          mk_array_writer_close(&w) == 0 && log_is(&b, "{}"),
        "writer: a string with a NUL byte is ENUL and writes nothing");
  mk_buf_free(&b);

  /* NaN and the infinities, as float8in reads them */
  special[0] = NAN;
  special[1] = INFINITY;
  special[2] = -INFINITY;
  mk_text_float(nan_inf[0], special[0]);
  mk_text_float(nan_inf[1], special[1]);
  mk_text_float(nan_inf[2], special[2]);
  check(strcmp(nan_inf[0], "NaN") == 0 && strcmp(nan_inf[1], "Infinity") == 0 &&
          strcmp(nan_inf[2], "-Infinity") == 0,
        "text_float: NaN, Infinity, -Infinity");
  sc.dbls = special;
  sc.steps = "{ddd}";
  check_writer(&sc, 0, "{NaN,Infinity,-Infinity}", 1022, "writer: NaN and infinities bare");
  sc.dbls = dbls;
  {
    char num[MK_TEXT_NUMLEN];
    int n = mk_text_int(num, -9223372036854775807LL - 1);
    check(n == 20 && strcmp(num, "-9223372036854775808") == 0, "text_int: the smallest int8");
    n = mk_text_int(num, 9223372036854775807LL);
    check(n == 19 && strcmp(num, "9223372036854775807") == 0, "text_int: the largest int8");
    n = mk_text_int(num, 0);
    check(n == 1 && strcmp(num, "0") == 0, "text_int: zero");
    n = mk_text_int(num, -7);
    check(n == 2 && strcmp(num, "-7") == 0, "text_int: a negative digit");
    n = mk_text_int(num, 1000000000);
    check(n == 10 && strcmp(num, "1000000000") == 0, "text_int: trailing zeros");
  }

  /* What the writer writes, the parser reads back. */
  sc.steps = "{{ss}{Ni}}";
  check_writer_parses(&sc, ',', "{{<a><say \"hi\">}{N<1>}}", "writer: parses back, nested");
  sc.steps = "{ssssssss}";
  check_writer_parses(&sc, ';', "{<a><say \"hi\"><back\\slash><><NULL>< x ><a,b;c><{}>}",
                      "writer: parses back with ';' as the delimiter");
  sc.strs = raw;
  sc.steps = "{b}";
  check_writer_parses(&sc, ',', "{<\\x01ff>}", "writer: a bytea element parses back to its hex text");
}

static void test_max_positional(void) {
  static const struct {
    const char *sql;
    int want;
    const char *bad;
  } cases[] = {
    {"SELECT 1", 0, NULL},
    {"SELECT $1", 1, NULL},
    {"SELECT $2, $1, $10", 10, NULL},
    {"SELECT '$3', $$ $4 $$, \"$5\" -- $6\n, $1 /* $7 */", 1, NULL},
    {"SELECT a$9, $1", 1, NULL},
    {"SELECT $1, $0, $2", -1, "$0"},
    {"SELECT $65535", 65535, NULL},
    {"SELECT $2, $65536", -1, "$65536"},
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof *cases; i++) {
    size_t n = strlen(cases[i].sql), off = 0, len = 0;
    char *text = exact_copy(cases[i].sql, n);
    char desc[128];
    int got = mk_sql_max_positional(text, n, &off, &len);
    int ok = got == cases[i].want;
    if (ok && cases[i].bad)
      ok = len == strlen(cases[i].bad) && memcmp(text + off, cases[i].bad, len) == 0;
    snprintf(desc, sizeof desc, "max positional: %d in \"%.40s\"", cases[i].want, cases[i].sql);
    for (off = 0; desc[off]; off++) /* one TAP line */
      if (desc[off] == '\n')
        desc[off] = ' ';
    if (!ok)
      printf("# got %d\n", got);
    check(ok, desc);
    free(text);
  }
}

static void test_sql(void) {
  mk_sql_named r;
  static const char in[] = "x :ab y :c";
  char many[256] = "", want[256] = "", *text;
  int i;

  check_sql("SELECT :a, :b, :a", "SELECT $1, $2, $1", "a,b", "sql: repeated names share a number");
  check_sql(":a :b :a :c :b", "$1 $2 $1 $3 $2", "a,b,c", "sql: numbering by first use");
  check_sql("SELECT 1", "SELECT 1", "", "sql: no placeholders");
  check_sql("", "", "", "sql: empty input");
  check_sql("SELECT ':a', :b", "SELECT ':a', $1", "b", "sql: string literal untouched");
  check_sql("SELECT 'it''s :x', :y", "SELECT 'it''s :x', $1", "y", "sql: '' inside a string");
  check_sql("SELECT 'a\\', :x", "SELECT 'a\\', $1", "x",
            "sql: backslash is ordinary in a standard string");
  check_sql("SELECT E'\\' :x', :y", "SELECT E'\\' :x', $1", "y", "sql: E'' with an escaped quote");
  check_sql("SELECT e'a\\\\' || :y", "SELECT e'a\\\\' || $1", "y",
            "sql: e'' with an escaped backslash");
  check_sql("SELECT e'a\\''':b' || :y", "SELECT e'a\\''':b' || $1", "y",
            "sql: e'' with both escape forms");
  check_sql("SELECT fooE'\\', :x", "SELECT fooE'\\', $1", "x",
            "sql: E ending a longer word is not an escape prefix");
  check_sql("SELECT E, :x", "SELECT E, $1", "x", "sql: E not before a quote is a word");
  check_sql("SELECT U&'d\\0061t :x', :y", "SELECT U&'d\\0061t :x', $1", "y", "sql: U&'' untouched");
  check_sql("SELECT U&'\\', :x", "SELECT U&'\\', $1", "x", "sql: backslash does not escape in U&''");
  check_sql("SELECT \"col:x\", \"a\"\":b\", :c", "SELECT \"col:x\", \"a\"\":b\", $1", "c",
            "sql: quoted identifiers with \"\"");
  check_sql("SELECT $$ :a $$, :b", "SELECT $$ :a $$, $1", "b", "sql: $$ dollar quote");
  check_sql("SELECT $fn$ :a $$ :b $fn$, :c", "SELECT $fn$ :a $$ :b $fn$, $1", "c",
            "sql: tagged dollar quote containing $$");
  check_sql("SELECT $t$ $T$ :a $t$, :b", "SELECT $t$ $T$ :a $t$, $1", "b",
            "sql: dollar quote tags are case-sensitive");
  check_sql("SELECT $_x1$ :a $_x1$ :b", "SELECT $_x1$ :a $_x1$ $1", "b",
            "sql: tag with _ and digits");
  check_sql("SELECT $1$ :a $1$", "SELECT $1$ $1 $1$", "a", "sql: $1 is a parameter, not a quote");
  check_sql("SELECT $1::int, :a", "SELECT $1::int, $1", "a", "sql: positional parameter kept");
  check_sql("SELECT a$b$ :c $b$", "SELECT a$b$ $1 $b$", "c",
            "sql: a$b$ is an identifier, the later $b$ is unterminated");
  check_sql("SELECT x$$ :a", "SELECT x$$ $1", "a", "sql: no dollar quote right after a word");
  check_sql("SELECT 1 -- :a\n, :b", "SELECT 1 -- :a\n, $1", "b", "sql: -- comment");
  check_sql("SELECT 1 -- :a\r:b", "SELECT 1 -- :a\r$1", "b", "sql: -- comment ends at \\r");
  check_sql("SELECT 1 -- :a", "SELECT 1 -- :a", "", "sql: -- comment at the end");
  check_sql("SELECT /* :a /* :b */ :c */ :d", "SELECT /* :a /* :b */ :c */ $1", "d",
            "sql: nested block comments");
  check_sql("SELECT '--', '/*', :x", "SELECT '--', '/*', $1", "x",
            "sql: comment starters inside strings");
  check_sql("SELECT 2 - -:x, 4/ *:y", "SELECT 2 - -$1, 4/ *$2", "x,y",
            "sql: lone - and / are operators");
  check_sql("SELECT :a::int, x::text", "SELECT $1::int, x::text", "a", "sql: ::casts are not placeholders");
  check_sql("a:::b", "a:::b", "", "sql: ':' after ':' never starts a placeholder");
  check_sql("x := :y", "x := $1", "y", "sql: := is not a placeholder");
  check_sql("SELECT : x", "SELECT : x", "", "sql: the name must follow ':' at once");
  check_sql("SELECT arr[1:n]", "SELECT arr[1:n]", "", "sql: arr[1:n] is a slice, not :n");
  check_sql("SELECT arr[lo:hi]", "SELECT arr[lo:hi]", "", "sql: arr[lo:hi] is a slice, not :hi");
  check_sql("SELECT arr[lo:hi], :lo", "SELECT arr[lo:hi], $1", "lo",
            "sql: a slice next to a real placeholder");
  check_sql("$:a", "$:a", "", "sql: no placeholder after '$' ($$1 would open a quote)");
  check_sql("SELECT x=:v, (:a,:b), arr[:lo], :v", "SELECT x=$1, ($2,$3), arr[$4], $1",
            "v,a,b,lo", "sql: placeholders after =, (, ',', [ and a blank");
  check_sql("x:a X:a _:a 9:a $1:a a$:a \xc3\xa9:a", "x:a X:a _:a 9:a $1:a a$:a \xc3\xa9:a", "",
            "sql: no placeholder after a letter, '_', digit, '$' or byte >= 0x80");
  check_sql("SELECT 'x':a, \"c\":b, f():c, 1.:d, -:e", "SELECT 'x'$1, \"c\"$2, f()$3, 1.$4, -$5",
            "a,b,c,d,e", "sql: placeholders after a quote, ')', '.' and an operator");
  check_sql(":a_1b2,:_x,:1,:\xc3\xa9", "$1,$2,:1,:\xc3\xa9", "a_1b2,_x",
            "sql: name characters");
  check_sql(":a:b", "$1:b", "a", "sql: :a:b, the second ':' follows a name");
  check_sql(":a :b", "$1 $2", "a,b", "sql: :a :b");
  check_sql("SELECT :a$b", "SELECT $1$b", "a", "sql: $ ends a name");
  check_sql(":a$b$ :x $b$ :y", "$1$b$ :x $b$ $2", "a,y",
            "sql: after a placeholder $b$ opens a dollar quote, as it does after $1");
  check_sql(":a$$ :x $$", "$1$$ :x $$", "a", "sql: after a placeholder $$ opens a dollar quote");
  check_sql("SELECT 1$$ :a $$, :b", "SELECT 1$$ :a $$, $1", "b",
            "sql: a dollar quote may start right after a number");
  check_sql("SELECT $1$$ :a $$, :b", "SELECT $1$$ :a $$, $1", "b",
            "sql: a dollar quote may start right after a parameter");
  check_sql("SELECT $$ :a $$$$ :b $$, :c", "SELECT $$ :a $$$$ :b $$, $1", "c",
            "sql: two dollar quotes back to back");
  check_sql("SELECT 'abc :x", "SELECT 'abc :x", "", "sql: unterminated string copied");
  check_sql("SELECT E'abc\\", "SELECT E'abc\\", "", "sql: unterminated E'' ending in backslash");
  check_sql("SELECT \"abc :x", "SELECT \"abc :x", "", "sql: unterminated identifier copied");
  check_sql("SELECT $$ :x", "SELECT $$ :x", "", "sql: unterminated dollar quote copied");
  check_sql("SELECT /* :x /* */", "SELECT /* :x /* */", "", "sql: unterminated nested comment");

  for (i = 0; i < 11; i++) {
    char part[16];
    snprintf(part, sizeof part, ":%c,", 'a' + i);
    strcat(many, part);
    snprintf(part, sizeof part, "$%d,", i + 1);
    strcat(want, part);
  }
  strcat(many, ":k");
  strcat(want, "$11");
  check_sql(many, want, "a,b,c,d,e,f,g,h,i,j,k", "sql: numbers past 9 grow the text");

  text = exact_copy(in, sizeof in - 1);
  check(mk_sql_named_rewrite(text, sizeof in - 1, &r) == 0 && r.count == 2 &&
            r.names[0].off == 3 && r.names[0].len == 2 && r.names[1].off == 9 &&
            r.names[1].len == 1 && r.sql[r.sql_len] == '\0',
        "sql: name offsets point after the ':'");
  mk_sql_named_free(&r);
  mk_sql_named_free(&r);
  check(r.sql == NULL && r.names == NULL && r.count == 0, "sql: free zeroes and can repeat");
  free(text);
}

static void test_positional(void) {
  check_pos("SELECT $1", "1@7+2;", "pos: one placeholder");
  check_pos("", "", "pos: empty input");
  check_pos("SELECT $10", "10@7+3;", "pos: $10 is one placeholder numbered 10");
  check_pos("$1::int, $2", "1@0+2;2@9+2;", "pos: $1::int");
  check_pos("SELECT $1, $1", "1@7+2;1@11+2;", "pos: every use is reported");
  check_pos("SELECT a$1, x$2$3", "", "pos: $n inside a word is not a placeholder");
  check_pos("SELECT '$1', 'it''s $2', $3", "3@25+2;", "pos: $n inside strings");
  check_pos("SELECT \"$1\", \"a\"\"$2\", $3", "3@22+2;", "pos: $n inside quoted identifiers");
  check_pos("-- $1\n$2 /* $3 /* $4 */ $5 */ $6", "2@6+2;6@30+2;",
            "pos: $n inside -- and nested block comments");
  check_pos("$$ body $1 $$ $2", "2@14+2;", "pos: $$ body $$ then $2");
  check_pos("$fn$ $1 $$ $2 $fn$ $3", "3@19+2;", "pos: $n inside a tagged dollar quote");
  check_pos("E'\\'$1' $3", "3@8+2;", "pos: E'\\'$1' $3");
  check_pos("e'a\\\\' $1", "1@7+2;", "pos: e'' ending in an escaped backslash");
  check_pos("U&'\\' $1", "1@6+2;", "pos: backslash does not escape in U&''");
  check_pos("$ 1 $a $_ $", "", "pos: '$' without digits is not a placeholder");
  check_pos("$1abc,$2)", "1@0+2;2@6+2;", "pos: the token ends at the last digit");
  check_pos("$65535 $65536 $0 $123456 $00001", "65535@0+6;0@7+6;0@14+2;0@17+7;1@25+6;",
            "pos: out of range numbers are reported as 0");
  check_pos("$99999999999999999999", "0@0+21;", "pos: a huge number does not overflow");
  check_pos(":a, $1, arr[1:2]", "1@4+2;", "pos: :names and slices are not reported");
  check_pos("1$1", "1@1+2;", "pos: $n right after a number is a parameter");
  check_pos("SELECT arr[1$1]", "1@12+2;", "pos: arr[1$1] has $1");
  check_pos("$1$2", "1@0+2;2@2+2;", "pos: $1$2 is two parameters");
  check_pos("$1:b", "1@0+2;", "pos: $1:b");
  check_pos("SELECT arr[lo$1]", "", "pos: lo$1 is one identifier");
  check_pos("$$1", "", "pos: $$1 opens a dollar quote");
  check_pos("1.$1 1.5$2", "1@2+2;2@8+2;", "pos: $n right after a decimal number");
  check_pos("1e5$1 0x1F$2 1_0$3", "",
            "pos: digits then a letter take the '$' along (junk to PostgreSQL)");
  check_pos("1$$ $1 $$ $2", "2@10+2;", "pos: a dollar quote may start right after a number");
  check_pos("1$a$ $1 $a$ $2", "2@12+2;", "pos: a tagged quote may start right after a number");
  check_pos("$1$$ $2 $$ $3", "1@0+2;3@11+2;", "pos: a dollar quote may start right after $n");
  check_pos("$$x$$$1", "1@5+2;", "pos: $n right after a dollar quote");
  check_pos("'x'$1 \"c\"$2", "1@3+2;2@9+2;", "pos: $n right after a string or quoted name");
  check_pos("$1$b$ $2 $b$ $3", "1@0+2;3@13+2;", "pos: $b$ after $1 opens a dollar quote");
  check_pos("SELECT '$1", "", "pos: unterminated string hides the rest");
  check_pos("SELECT $$ $1", "", "pos: unterminated dollar quote hides the rest");
  check_pos_stop("$1 $2 $3", 2, 42, "1@0+2;2@3+2;", "pos: non-zero from fn stops and is returned");
}

static void test_routine(void) {
  static const char *good[] = {"f", "_f1", "a$b", "F_2", "public.f", "db.public.f",
                               "\"My Func\"", "\"a\"\"b\"", "\"\"\"\"", "public.\"F\"",
                               "\"a.b\"", "\"x\".y.\"z\""};
  static const char *bad[] = {"", "1f", "a b", " a", "a.", ".a", "a..b", "a.b.c.d",
                              "\"\"", "\"abc", "\"a\"b", "a;drop", "f()", "\xc3\xa9",
                              "a.\"\"", "$a", "a-b", "\"a\"\".b", "a.\"b"};
  size_t i;

  for (i = 0; i < sizeof good / sizeof *good; i++)
    check_routine(good[i], strlen(good[i]), 1);
  for (i = 0; i < sizeof bad / sizeof *bad; i++)
    check_routine(bad[i], strlen(bad[i]), 0);
  check_routine("\"a\0b\"", 5, 0);
  {
    /* MK_SQL_NAME_MAX bytes per part (quotes not counted, "" counted as one byte) */
    static const char fs[] = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"; /* 64 */
    char name[100];
    int n;
    n = snprintf(name, sizeof name, "%.63s", fs);
    check_routine(name, (size_t)n, 1);
    n = snprintf(name, sizeof name, "%.64s", fs);
    check_routine(name, (size_t)n, 0);
    n = snprintf(name, sizeof name, "s.%.63s", fs);
    check_routine(name, (size_t)n, 1);
    n = snprintf(name, sizeof name, "%.64s.f", fs);
    check_routine(name, (size_t)n, 0);
    n = snprintf(name, sizeof name, "\"%.63s\"", fs);
    check_routine(name, (size_t)n, 1);
    n = snprintf(name, sizeof name, "\"%.64s\"", fs);
    check_routine(name, (size_t)n, 0);
    n = snprintf(name, sizeof name, "\"\"\"%.62s\"", fs);
    check_routine(name, (size_t)n, 1);
    n = snprintf(name, sizeof name, "\"\"\"%.63s\"", fs);
    check_routine(name, (size_t)n, 0);
  }
}

/* ---- mk_sql_pipelinable ---- */

static void check_pipe(const char *s, int want, const char *desc) {
  size_t n = strlen(s);
  char *text = exact_copy(s, n);
  int got = mk_sql_pipelinable(text, n);
  if (got != want)
    printf("# got %d for '%s'\n", got, s);
  check(got == want, desc);
  free(text);
}

static void test_pipelinable(void) {
  char *text;

  check_pipe("SELECT 1", 1, "pipe: one statement");
  check_pipe("SELECT $1::int + 1", 1, "pipe: one statement with a parameter");
  check_pipe("SELECT 1;", 1, "pipe: a trailing ';'");
  check_pipe("  SELECT 1 ;  \n\t", 1, "pipe: ';' and blanks around");
  check_pipe("SELECT 1; -- done", 1, "pipe: a -- comment after the ';'");
  check_pipe("SELECT 1; /* a /* nested */ */ -- b\n", 1, "pipe: block and line comments after the ';'");
  check_pipe("SELECT 1 -- ; SELECT 2", 1, "pipe: ';' inside a -- comment");
  check_pipe("SELECT /* ; SELECT 2 */ 1", 1, "pipe: ';' inside a block comment");
  check_pipe("SELECT ';', 'a;b'", 1, "pipe: ';' inside strings");
  check_pipe("SELECT 'it''s; x'", 1, "pipe: ';' inside a string with ''");
  check_pipe("SELECT E'\\'; SELECT 2'", 1, "pipe: ';' inside an E'' string after \\'");
  check_pipe("SELECT \"a;b\" FROM t", 1, "pipe: ';' inside a quoted identifier");
  check_pipe("SELECT $$;$$, $t$ ; SELECT 2 $t$", 1, "pipe: ';' inside dollar quotes");
  check_pipe("DO $$BEGIN PERFORM 1; PERFORM 2; END$$", 1, "pipe: a DO body with ';'s");
  check_pipe("SELECT * FROM copy", 1, "pipe: copy not as the first word");
  check_pipe("SELECT copy_from FROM t", 1, "pipe: a word that starts with copy");
  check_pipe("copyx", 1, "pipe: copyx is not COPY");
  check_pipe("\"copy\"", 1, "pipe: a quoted \"copy\" is not COPY");
  check_pipe("", 1, "pipe: empty text");
  check_pipe("SELECT 1; SELECT 2", 0, "pipe: two statements");
  check_pipe("SELECT 1;SELECT 2;", 0, "pipe: two statements, no blank");
  check_pipe("SELECT 1 -- c\n; SELECT 2", 0, "pipe: a comment before the ';' of two statements");
  check_pipe("SELECT 1; /* c */ SELECT 2", 0, "pipe: a comment between two statements");
  check_pipe("SELECT $$x$$; SELECT 2", 0, "pipe: a dollar quote then a second statement");
  check_pipe("BEGIN; SELECT 1", 0, "pipe: BEGIN; SELECT 1");
  check_pipe("SELECT 1; COPY t TO STDOUT", 0, "pipe: a COPY as second statement");
  check_pipe("COPY t FROM STDIN", 0, "pipe: COPY");
  check_pipe("copy t to stdout", 0, "pipe: copy in lower case");
  check_pipe("CoPy (SELECT 1) TO STDOUT", 0, "pipe: CoPy in mixed case");
  check_pipe(" \n\t\r\f\vCOPY t FROM STDIN", 0, "pipe: COPY after whitespace");
  check_pipe("/* x */COPY t FROM STDIN", 0, "pipe: COPY after a block comment");
  check_pipe("/* a /* b */ c */ copy t FROM STDIN", 0, "pipe: COPY after a nested comment");
  check_pipe("-- c\nCOPY t FROM STDIN", 0, "pipe: COPY after a line comment");
  check_pipe("COPY", 0, "pipe: COPY alone");
  /* len is honoured: only the first statement of the buffer is looked at */
  text = exact_copy("SELECT 1; SELECT 2", 9);
  check(mk_sql_pipelinable(text, 9) == 1, "pipe: only len bytes are read");
  free(text);
  text = exact_copy("COPY", 3);
  check(mk_sql_pipelinable(text, 3) == 1, "pipe: COP (len 3) is not COPY");
  free(text);
}

/* ---- mk_stmtcache ---- */

/* One use of (sql, nparams, types); sql and types are copied into exact buffers (freed
 * after the call, so the cache must have copied them). Returns the use. */
static mk_stmtcache_use_t sc_use(mk_stmtcache *sc, const char *sql, int nparams, const Oid *types) {
  size_t n = strlen(sql) + 1;
  char *s = exact_copy(sql, n);
  Oid *t = NULL;
  mk_stmtcache_use_t u;
  if (nparams > 0) {
    t = (Oid *)(void *)alloc_exact((size_t)nparams * sizeof *t);
    memcpy(t, types, (size_t)nparams * sizeof *t);
  }
  memset(&u, 0xff, sizeof u);
  if (mk_stmtcache_use(sc, s, nparams, t, &u) != 0) {
    fputs("out of memory\n", stderr);
    exit(2);
  }
  memset(s, 'x', n - 1); /* the cache must not keep pointing at the caller's text */
  free(s);
  free(t);
  return u;
}

static int use_is(mk_stmtcache_use_t u, unsigned id, int prepare, unsigned evicted) {
  int ok = u.id == id && u.prepare == prepare && u.evicted == evicted;
  if (!ok)
    printf("# got id=%u prepare=%d evicted=%u, want id=%u prepare=%d evicted=%u\n", u.id, u.prepare,
           u.evicted, id, prepare, evicted);
  return ok;
}

static void test_stmtcache(void) {
  static const Oid int4[] = {23}, text1[] = {25}, unknown[] = {0}, two[] = {23, 23}, rev[] = {25, 23},
                   fwd[] = {23, 25};
  mk_stmtcache *sc;
  mk_stmtcache_use_t a1, b1, u;
  unsigned last = 0;
  int i, ok;

  check(mk_stmtcache_new(0) == NULL, "stmtcache: capacity 0 is refused");
  check(mk_stmtcache_new(-1) == NULL, "stmtcache: a negative capacity is refused");
  mk_stmtcache_free(NULL);

  sc = mk_stmtcache_new(3);
  check(sc != NULL && mk_stmtcache_count(sc) == 0, "stmtcache: a new cache is empty");
  check(use_is(sc_use(sc, "A", 1, int4), 0, 0, 0), "stmtcache: a first run is unnamed");
  check(mk_stmtcache_count(sc) == 1, "stmtcache: a first run makes an entry");
  a1 = sc_use(sc, "A", 1, int4);
  check(a1.id != 0 && a1.prepare == 1 && a1.evicted == 0, "stmtcache: the second run prepares, with an id");
  check(use_is(sc_use(sc, "A", 1, int4), a1.id, 0, 0), "stmtcache: later runs use the id, no prepare");
  check(use_is(sc_use(sc, "A", 1, int4), a1.id, 0, 0), "stmtcache: ... every time");
  check(mk_stmtcache_count(sc) == 1, "stmtcache: one entry for one key");
  /* recency now: A. Add B, C: C, B, A; D pushes out A, the least recently used */
  check(use_is(sc_use(sc, "B", 1, int4), 0, 0, 0), "stmtcache: B first run");
  check(use_is(sc_use(sc, "C", 1, int4), 0, 0, 0), "stmtcache: C first run");
  check(mk_stmtcache_count(sc) == 3, "stmtcache: full at capacity");
  check(use_is(sc_use(sc, "D", 1, int4), 0, 0, a1.id),
        "stmtcache: the capacity+1-th key pushes out the LRU entry and hands back its id");
  check(mk_stmtcache_count(sc) == 3, "stmtcache: still at capacity after an eviction");
  /* D, C, B: using B makes it the most recent, so E pushes out C (never prepared: 0) */
  b1 = sc_use(sc, "B", 1, int4);
  check(b1.prepare == 1 && b1.id != 0 && b1.id != a1.id && b1.evicted == 0,
        "stmtcache: B's second run prepares it under a new id");
  check(use_is(sc_use(sc, "E", 1, int4), 0, 0, 0),
        "stmtcache: pushing out a never-prepared entry hands back 0");
  /* E, B, D: C is gone (a first run again), which pushes out D (never prepared) */
  check(use_is(sc_use(sc, "C", 1, int4), 0, 0, 0), "stmtcache: a pushed-out key starts over");
  /* C, E, B: A starts over too and pushes out B, prepared */
  check(use_is(sc_use(sc, "A", 1, int4), 0, 0, b1.id), "stmtcache: LRU order follows use, not insertion");
  check(use_is(sc_use(sc, "A", 1, int4), b1.id + 1, 1, 0),
        "stmtcache: a key seen again after eviction is prepared under a fresh id");
  mk_stmtcache_free(sc);

  /* the key is the SQL text and the parameter types */
  sc = mk_stmtcache_new(16);
  (void)sc_use(sc, "SELECT $1", 1, int4);
  check(use_is(sc_use(sc, "SELECT $1", 1, text1), 0, 0, 0), "stmtcache: other type OIDs, another entry");
  check(use_is(sc_use(sc, "SELECT $1", 1, unknown), 0, 0, 0), "stmtcache: OID 0 is a type of its own");
  check(use_is(sc_use(sc, "SELECT $1", 0, NULL), 0, 0, 0), "stmtcache: no parameters, another entry");
  check(use_is(sc_use(sc, "SELECT $1", 2, two), 0, 0, 0), "stmtcache: two int4s differ from one");
  check(use_is(sc_use(sc, "SELECT $1", 2, fwd), 0, 0, 0), "stmtcache: (int4, text) another entry");
  check(use_is(sc_use(sc, "SELECT $1", 2, rev), 0, 0, 0), "stmtcache: (text, int4): the order counts");
  check(use_is(sc_use(sc, "SELECT $1 ", 1, int4), 0, 0, 0), "stmtcache: a byte more of SQL, another entry");
  check(use_is(sc_use(sc, "SELECT $", 1, int4), 0, 0, 0), "stmtcache: a prefix of the SQL, another entry");
  check(mk_stmtcache_count(sc) == 9, "stmtcache: nine distinct keys");
  u = sc_use(sc, "SELECT $1", 1, text1);
  check(u.prepare == 1 && u.id != 0, "stmtcache: each typed key is prepared on its own second run");
  a1 = sc_use(sc, "SELECT $1", 1, int4);
  check(a1.prepare == 1 && a1.id != u.id, "stmtcache: ... under its own id");
  b1 = sc_use(sc, "SELECT $1", 0, NULL);
  check(b1.prepare == 1 && b1.id != u.id && b1.id != a1.id, "stmtcache: the key without parameters too");
  check(use_is(sc_use(sc, "SELECT $1", 1, text1), u.id, 0, 0), "stmtcache: the text key keeps its id");

  /* forget */
  check(mk_stmtcache_forget(sc, 0) == 0, "stmtcache: forget(0) forgets nothing");
  check(mk_stmtcache_forget(sc, 99999) == 0, "stmtcache: forget of an unknown id is 0");
  check(mk_stmtcache_count(sc) == 9, "stmtcache: ... and changes nothing");
  check(mk_stmtcache_forget(sc, u.id) == 1, "stmtcache: forget of a prepared id is 1");
  check(mk_stmtcache_count(sc) == 8, "stmtcache: forget removes the entry");
  check(mk_stmtcache_forget(sc, u.id) == 0, "stmtcache: a second forget of it is 0");
  check(use_is(sc_use(sc, "SELECT $1", 1, text1), 0, 0, 0), "stmtcache: a forgotten key starts over unnamed");
  u = sc_use(sc, "SELECT $1", 1, text1);
  check(u.prepare == 1 && u.id > b1.id, "stmtcache: and is prepared again under a fresh id");
  check(use_is(sc_use(sc, "SELECT $1", 1, int4), a1.id, 0, 0), "stmtcache: other entries are untouched");
  mk_stmtcache_free(sc);

  /* ids: never 0, never reused; capacity 1 evicts at every new key */
  sc = mk_stmtcache_new(1);
  ok = 1;
  for (i = 0; i < 1000; i++) {
    char sql[32];
    snprintf(sql, sizeof sql, "SELECT %d", i);
    u = sc_use(sc, sql, 0, NULL);
    if (u.id != 0 || u.prepare != 0 || u.evicted != last)
      ok = 0;
    u = sc_use(sc, sql, 0, NULL);
    if (u.id == 0 || u.id <= last || u.prepare != 1 || u.evicted != 0)
      ok = 0;
    last = u.id;
    if (mk_stmtcache_count(sc) != 1)
      ok = 0;
  }
  check(ok, "stmtcache: capacity 1: each new key evicts the last, ids rise and are never 0");
  mk_stmtcache_free(sc);
}

/* ---- random inputs: deterministic xorshift64; inputs are drawn mostly from the bytes
 * the parsers treat specially so that the deep paths are reached. ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static unsigned rnd(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng % n);
}

static size_t random_input(char *buf, size_t max) {
  static const char alphabet[] = "{}{}\"\",,\\\\ NULLnull[]:-=>$$''Ee&U1a_\t\n/*x;";
  size_t n = rnd((unsigned)max + 1), i;

  for (i = 0; i < n; i++)
    buf[i] = rnd(5) ? alphabet[rnd(sizeof alphabet - 1)] : (char)rnd(256);
  return n;
}

typedef struct count_sink {
  int depth, max_depth, bad;
} count_sink;

static int cnt_open(void *ud) {
  count_sink *c = ud;
  if (++c->depth > c->max_depth)
    c->max_depth = c->depth;
  return 0;
}

static int cnt_close(void *ud) {
  count_sink *c = ud;
  if (--c->depth < 0)
    c->bad = 1;
  return 0;
}

static int cnt_elem(void *ud, const char *s, size_t len, int is_null) {
  count_sink *c = ud;
  if (c->depth <= 0 || (!is_null && len > 0 && s == NULL))
    c->bad = 1;
  return 0;
}

static int cnt_pair(void *ud, const char *k, size_t kl, const char *v, size_t vl,
                    int vnull) {
  (void)k, (void)kl, (void)v, (void)vl, (void)vnull;
  ++*(int *)ud;
  return 0;
}

/* Round trip: a quoted string parsed back as the only element of an array. */
static int roundtrip_elem(void *ud, const char *s, size_t len, int is_null) {
  mk_buf *got = ud;
  return is_null ? 1 : mk_buf_add(got, s, len) != 0;
}

static int noop(void *ud) {
  (void)ud;
  return 0;
}

#define FUZZ_ROUNDS 4000
#define FUZZ_MAX 48

/* Checks each reported token against the text: '$', then only digits up to a non-digit,
 * the number matching them, offsets strictly increasing and in bounds. */
typedef struct pos_fuzz {
  const char *text;
  size_t n, next;
  int bad;
} pos_fuzz;

static int fuzz_pos(void *ud, unsigned number, size_t off, size_t len) {
  pos_fuzz *f = ud;
  unsigned long v = 0;
  size_t k;

  if (off < f->next || len < 2 || off + len > f->n || f->text[off] != '$' ||
      (off + len < f->n && f->text[off + len] >= '0' && f->text[off + len] <= '9')) {
    f->bad = 1;
    return 1;
  }
  for (k = 1; k < len; k++) {
    if (f->text[off + k] < '0' || f->text[off + k] > '9') {
      f->bad = 1;
      return 1;
    }
    if (k <= 5)
      v = v * 10 + (unsigned long)(f->text[off + k] - '0');
  }
  if (number != (len > 6 || v > 65535 ? 0 : v))
    f->bad = 1;
  f->next = off + len;
  return f->bad;
}

/* 1 if a ':' right after c can never start a placeholder: ':', '$', '_', an ASCII
 * letter or digit, or a byte >= 0x80. */
static int glues_to_colon(char c) {
  return c == ':' || c == '$' || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || (unsigned char)c >= 0x80;
}

static void fuzz(void) {
  char buf[FUZZ_MAX];
  int i, ok_arr = 1, ok_hs = 1, ok_by = 1, ok_sql = 1, ok_pos = 1, ok_rt = 1,
      ok_q = 1;

  for (i = 0; i < FUZZ_ROUNDS; i++) {
    size_t n = random_input(buf, sizeof buf), k;
    char *text = exact_copy(buf, n), *scratch = alloc_exact(n);
    count_sink c = {0, 0, 0};
    mk_array_sink sink = {cnt_open, cnt_close, cnt_elem, &c};
    int rc, pairs = 0;
    ssize_t br;
    mk_sql_named r;
    mk_buf q, got;

    rc = mk_array_parse(text, n, rnd(4) ? ',' : ';', scratch, &sink);
    if ((rc != 0 && rc != MK_TEXT_EPARSE) || c.bad || c.max_depth > MK_TEXT_MAXDEPTH ||
        (rc == 0 && c.depth != 0))
      ok_arr = 0;

    rc = mk_hstore_parse(text, n, scratch, cnt_pair, &pairs);
    if (rc != 0 && rc != MK_TEXT_EPARSE)
      ok_hs = 0;

    br = mk_bytea_decode(text, n, scratch);
    if (br < -1 || br > (ssize_t)n)
      ok_by = 0;

    if (mk_sql_named_rewrite(text, n, &r) != 0) {
      ok_sql = 0;
    } else {
      for (k = 0; k < r.count; k++) {
        const mk_sql_name *nm = &r.names[k];
        if (nm->off == 0 || nm->len == 0 || nm->off + nm->len > n || text[nm->off - 1] != ':' ||
            (nm->off >= 2 && glues_to_colon(text[nm->off - 2])))
          ok_sql = 0;
      }
      if (memchr(text, ':', n) == NULL && (r.sql_len != n || memcmp(r.sql, text, n) != 0))
        ok_sql = 0;
      mk_sql_named_free(&r);
    }

    {
      pos_fuzz pf = {NULL, 0, 0, 0};
      pf.text = text;
      pf.n = n;
      if (mk_sql_scan_positional(text, n, fuzz_pos, &pf) != 0 || pf.bad)
        ok_pos = 0;
    }

    rc = mk_sql_is_routine_name(text, n);
    if (rc != 0 && rc != 1)
      ok_rt = 0;

    /* quote -> array element and hstore pair must give back the same bytes */
    mk_buf_init(&q);
    mk_buf_init(&got);
    if (mk_buf_addc(&q, '{') == 0 && mk_text_quote(&q, text, n) == 0 && mk_buf_addc(&q, '}') == 0) {
      char *qs = exact_copy(q.data, q.len), *sc = alloc_exact(q.len);
      mk_array_sink rs = {noop, noop, roundtrip_elem, &got};
      if (mk_array_parse(qs, q.len, ',', sc, &rs) != 0 || got.len != n ||
          (n && memcmp(got.data, text, n) != 0))
        ok_q = 0;
      free(qs);
      free(sc);
    } else {
      ok_q = 0;
    }
    mk_buf_free(&q);
    mk_buf_free(&got);

    free(text);
    free(scratch);
  }
  check(ok_arr, "fuzz: array parser on random input");
  check(ok_hs, "fuzz: hstore parser on random input");
  check(ok_by, "fuzz: bytea decoder on random input");
  check(ok_sql, "fuzz: sql rewriter on random input");
  check(ok_pos, "fuzz: positional scanner on random input");
  check(ok_rt, "fuzz: routine-name check on random input");
  check(ok_q, "fuzz: quote then array parse round-trips random bytes");
}

static void test_copy(void) {
  mk_buf b;
  char *in = alloc_exact(9);
  memcpy(in, "a\\b\tc\nd\r", 8);
  in[8] = 'e';
  mk_buf_init(&b);
  check(mk_copy_add_value(&b, in, 9) == 0 && b.len == 13 && memcmp(b.data, "a\\\\b\\tc\\nd\\re", 13) == 0,
        "copy: backslash, tab, newline and CR are escaped, the rest kept");
  check(mk_copy_add_null(&b) == 0 && b.len == 15 && memcmp(b.data + 13, "\\N", 2) == 0,
        "copy: NULL is \\N");
  b.len = 0;
  check(mk_copy_add_value(&b, in, 0) == 0 && b.len == 0, "copy: an empty value adds nothing");
  memcpy(in, "plain", 5);
  check(mk_copy_add_value(&b, in, 5) == 0 && b.len == 5 && memcmp(b.data, "plain", 5) == 0,
        "copy: a value without special bytes is copied as it is");
  b.len = 0;
  check(mk_copy_add_int(&b, -9223372036854775807LL - 1) == 0 && mk_copy_next_column(&b) == 0 &&
            mk_copy_add_float(&b, 0.1) == 0 && mk_copy_next_column(&b) == 0 && mk_copy_add_float(&b, -HUGE_VAL) == 0 &&
            mk_copy_next_column(&b) == 0 && mk_copy_add_float(&b, NAN) == 0 && mk_copy_next_column(&b) == 0 &&
            mk_copy_add_bool(&b, 2) == 0 && mk_copy_add_bool(&b, 0) == 0 && mk_copy_end_row(&b) == 0 &&
            b.len == strlen("-9223372036854775808\t0.10000000000000001\t-Infinity\tNaN\ttf\n") &&
            memcmp(b.data, "-9223372036854775808\t0.10000000000000001\t-Infinity\tNaN\ttf\n", b.len) == 0,
        "copy: integers, floats (17 digits, -Infinity, NaN) and booleans as the server reads them, tab and newline");
  free(in);
  mk_buf_free(&b);
  check(mk_sql_starts_with_keyword("  -- c\n /* x */ Copy t FROM STDIN", "copy"), "sql: keyword after comments, any case");
  check(!mk_sql_starts_with_keyword("copyx", "copy") && !mk_sql_starts_with_keyword("cop", "copy") &&
            !mk_sql_starts_with_keyword("/* open", "copy") && !mk_sql_starts_with_keyword("SELECT 1", "copy"),
        "sql: not a keyword prefix of a longer word, of a shorter text, in an open comment or elsewhere");
}

int main(void) {
  test_buf();
  test_array();
  test_hstore();
  test_bytea();
  test_quote();
  test_writer();
  test_sql();
  test_positional();
  test_max_positional();
  test_routine();
  test_pipelinable();
  test_stmtcache();
  test_copy();
  fuzz();
  printf("1..%d\n", ntests);
  return nfailed ? 1 : 0;
}

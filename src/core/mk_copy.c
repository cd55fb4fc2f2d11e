/* mk_copy: values in COPY's text format (see mk_copy.h). */
#include "mk_copy.h"

#include "mk_text.h"

int mk_copy_add_value(mk_buf *b, const char *s, size_t n) {
  size_t i, start = b->len, run = 0;
  if (mk_buf_reserve(b, n + n / 8 + 1) < 0) return -1;
  for (i = 0; i < n; i++) {
    char esc;
    switch (s[i]) {
    case '\\': esc = '\\'; break;
    case '\t': esc = 't'; break;
    case '\n': esc = 'n'; break;
    case '\r': esc = 'r'; break;
    default: continue;
    }
    /* the plain bytes before it, then the escape */
    if (mk_buf_add(b, s + run, i - run) < 0 || mk_buf_addc(b, '\\') < 0 || mk_buf_addc(b, esc) < 0) {
      b->len = start;
      if (b->data) b->data[start] = '\0';
      return -1;
    }
    run = i + 1;
  }
  if (mk_buf_add(b, s + run, n - run) < 0) {
    b->len = start;
    if (b->data) b->data[start] = '\0';
    return -1;
  }
  return 0;
}

int mk_copy_add_null(mk_buf *b) { return mk_buf_add(b, "\\N", 2); }

int mk_copy_add_int(mk_buf *b, long long v) {
  char num[MK_TEXT_NUMLEN];
  return mk_buf_add(b, num, (size_t)mk_text_int(num, v));
}

int mk_copy_add_float(mk_buf *b, double x) {
  char num[MK_TEXT_NUMLEN];
  return mk_buf_add(b, num, (size_t)mk_text_float(num, x));
}

int mk_copy_add_bool(mk_buf *b, int v) { return mk_buf_addc(b, v ? 't' : 'f'); }

int mk_copy_next_column(mk_buf *b) { return mk_buf_addc(b, '\t'); }

int mk_copy_end_row(mk_buf *b) { return mk_buf_addc(b, '\n'); }

/* mk_copy: values in COPY's text format (see mk_copy.h). */
#include "mk_copy.h"

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

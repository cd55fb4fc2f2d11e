/* mk_buf.c: the growable byte buffer declared in mk_buf.h.
 * The buffer owns data (malloc'd); the caller owns the mk_buf itself. Growth keeps one
 * spare byte so the contents can always be NUL-terminated without another allocation. */
#include "mk_buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Sets b to the empty state without allocating. */
void mk_buf_init(mk_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

/* Makes room for extra more bytes plus the terminating NUL. Returns 0, or -1 when the
 * size overflows or memory ran out; the contents are untouched either way. */
int mk_buf_reserve(mk_buf *b, size_t extra) {
  size_t need, cap;
  char *p;

  if (extra > SIZE_MAX - 1 - b->len)
    return -1;
  need = b->len + extra + 1;
  if (need <= b->cap)
    return 0;
  /* Doubling keeps appends amortised O(1); start at a size that fits short SQL. */
  cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = realloc(b->data, cap);
  if (p == NULL)
    return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

/* Appends n bytes from s (which may hold NULs) and keeps the data NUL-terminated.
 * Appending nothing never allocates, so s may be NULL when n is 0. */
int mk_buf_add(mk_buf *b, const char *s, size_t n) {
  if (n == 0)
    return 0;
  if (mk_buf_reserve(b, n) != 0)
    return -1;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

/* Appends one byte. */
int mk_buf_addc(mk_buf *b, char c) {
  return mk_buf_add(b, &c, 1);
}

/* Appends the NUL-terminated string s, without its NUL. */
int mk_buf_adds(mk_buf *b, const char *s) {
  return mk_buf_add(b, s, strlen(s));
}

/* Returns the contents as a C string that stays owned by b; an empty buffer is given
 * storage here so the result is never NULL except when memory ran out. */
const char *mk_buf_cstr(mk_buf *b) {
  if (mk_buf_reserve(b, 0) != 0)
    return NULL;
  b->data[b->len] = '\0';
  return b->data;
}

/* Releases the storage; b is left empty and reusable. */
void mk_buf_free(mk_buf *b) {
  free(b->data);
  mk_buf_init(b);
}

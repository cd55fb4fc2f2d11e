/* fuzz_named.c: mk_sql_named_rewrite and mk_sql_scan_positional on arbitrary SQL.
 * Invariants:
 *  - the rewrite succeeds and its output is NUL-terminated;
 *  - an input without ':' comes back unchanged, with no names;
 *  - the names are count distinct [A-Za-z_][A-Za-z0-9_]* words, each taken whole and
 *    right after a ':' that does not follow another ':', a '$' or an identifier
 *    character (letter, digit, '_', byte >= 0x80), so no $k is glued to what precedes;
 *  - the output is the input with some :name replaced by $k: walking both at once
 *    (a ':' in the input faces either the same ':' or a '$' in the output) every
 *    replacement $k names names[k-1], and the k are numbered by first use, the first
 *    use of names[k-1] being at its recorded offset;
 *  - mk_sql_scan_positional on the output reports every inserted $k, whole and with
 *    number k; any other $n it reports was copied byte for byte from the input (and
 *    its number matches its digits). So every $n outside quotes in the output is
 *    either one of the count names or a positional parameter the user wrote. */
#include "fuzz_util.h"

#include "mk_sql.h"

typedef struct token {
  size_t off, len;
  unsigned number;
} token;

typedef struct token_list {
  token *t;
  size_t n, cap;
} token_list;

static void push(token_list *l, size_t off, size_t len, unsigned number) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    token *t = realloc(l->t, cap * sizeof *t);
    FUZZ_CHECK(t != NULL);
    l->t = t;
    l->cap = cap;
  }
  l->t[l->n].off = off;
  l->t[l->n].len = len;
  l->t[l->n].number = number;
  l->n++;
}

static int on_token(void *ud, unsigned number, size_t off, size_t len) {
  push(ud, off, len, number);
  return 0;
}

static int is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_cont(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}

/* For sorting names by their bytes. */
static const char *sort_text;

static int cmp_names(const void *a, const void *b) {
  const mk_sql_name *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(sort_text + x->off, sort_text + y->off, n);
  if (c != 0)
    return c;
  return x->len < y->len ? -1 : x->len > y->len;
}

/* PostgreSQL's ident_cont (letters, digits, '_', '$', bytes >= 0x80). */
static int is_ident_cont(char c) {
  return is_name_cont(c) || c == '$' || (unsigned char)c >= 0x80;
}

static void dump(const char *what, const char *s, size_t n) {
  size_t i;
  fprintf(stderr, "%s (%zu bytes): ", what, n);
  for (i = 0; i < n && i < 200; i++)
    fprintf(stderr, "%02x", (unsigned char)s[i]);
  fputc('\n', stderr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_copy(data, size);
  mk_sql_named r;
  size_t i, o, k;
  unsigned char *copied;
  size_t seen = 0;
  token_list ins = {NULL, 0, 0}, out_toks = {NULL, 0, 0};
  const char *out;

  FUZZ_CHECK(mk_sql_named_rewrite(text, size, &r) == 0);
  FUZZ_CHECK(r.sql != NULL && r.sql[r.sql_len] == '\0');
  out = r.sql;

  if (size == 0 || memchr(text, ':', size) == NULL)
    FUZZ_CHECK(r.count == 0 && r.sql_len == size && (size == 0 || memcmp(out, text, size) == 0));

  /* The names themselves. */
  for (k = 0; k < r.count; k++) {
    const mk_sql_name *nm = &r.names[k];
    FUZZ_CHECK(nm->off >= 1 && nm->len >= 1 && nm->off + nm->len <= size);
    FUZZ_CHECK(text[nm->off - 1] == ':');
    FUZZ_CHECK(nm->off < 2 || (text[nm->off - 2] != ':' && !is_ident_cont(text[nm->off - 2])));
    FUZZ_CHECK(is_name_start(text[nm->off]));
    for (i = 1; i < nm->len; i++)
      FUZZ_CHECK(is_name_cont(text[nm->off + i]));
    FUZZ_CHECK(nm->off + nm->len == size || !is_name_cont(text[nm->off + nm->len]));
  }
  if (r.count > 1) {
    mk_sql_name *sorted = (mk_sql_name *)fuzz_copy(r.names, r.count * sizeof *r.names);
    sort_text = text;
    qsort(sorted, r.count, sizeof *sorted, cmp_names);
    for (k = 1; k < r.count; k++)
      FUZZ_CHECK(cmp_names(&sorted[k - 1], &sorted[k]) != 0);
    free(sorted);
  }

  /* Walk input and output together. */
  copied = (unsigned char *)fuzz_alloc(r.sql_len);
  for (i = 0, o = 0; i < size;) {
    FUZZ_CHECK(o < r.sql_len);
    if (text[i] == ':' && out[o] == '$') {
      size_t j = i + 1, p = o + 1, v = 0, nlen;
      const mk_sql_name *nm;
      FUZZ_CHECK(i == 0 || (text[i - 1] != ':' && !is_ident_cont(text[i - 1])));
      FUZZ_CHECK(j < size && is_name_start(text[j]));
      while (j < size && is_name_cont(text[j]))
        j++;
      nlen = j - i - 1;
      FUZZ_CHECK(p < r.sql_len && out[p] >= '1' && out[p] <= '9');
      while (p < r.sql_len && out[p] >= '0' && out[p] <= '9') {
        v = v * 10 + (size_t)(out[p] - '0');
        FUZZ_CHECK(v <= r.count);
        p++;
      }
      FUZZ_CHECK(v >= 1);
      nm = &r.names[v - 1];
      FUZZ_CHECK(nm->len == nlen && memcmp(text + nm->off, text + i + 1, nlen) == 0);
      if (v == seen + 1) {
        FUZZ_CHECK(nm->off == i + 1);
        seen++;
      } else {
        FUZZ_CHECK(v <= seen);
      }
      push(&ins, o, p - o, (unsigned)v);
      memset(copied + o, 0, p - o);
      i = j;
      o = p;
    } else {
      FUZZ_CHECK(out[o] == text[i]);
      copied[o++] = 1;
      i++;
    }
  }
  FUZZ_CHECK(o == r.sql_len && seen == r.count);

  /* Positional scan of the output: each inserted $k is reported, as k and whole; any
   * other report is a $n token copied byte for byte from the input. */
  FUZZ_CHECK(mk_sql_scan_positional(out, r.sql_len, on_token, &out_toks) == 0);
  {
    size_t a = 0, n;
    int ok = 1;
    for (n = 0; ok && n < out_toks.n; n++) {
      const token *got = &out_toks.t[n];
      size_t q;
      unsigned long v = 0;
      ok = got->len >= 2 && got->off + got->len <= r.sql_len && out[got->off] == '$';
      while (ok && a < ins.n && ins.t[a].off < got->off)
        ok = 0; /* an insertion before this report was skipped */
      if (!ok)
        break;
      if (a < ins.n && ins.t[a].off == got->off) {
        ok = got->len == ins.t[a].len && got->number == ins.t[a].number;
        a++;
        continue;
      }
      for (q = 0; ok && q < got->len; q++)
        ok = copied[got->off + q] && (q == 0 || (out[got->off + q] >= '0' && out[got->off + q] <= '9'));
      for (q = 1; ok && q < got->len && q <= 5; q++)
        v = v * 10 + (unsigned long)(out[got->off + q] - '0');
      ok = ok && got->number == (got->len > 6 || v > 65535 ? 0 : v);
    }
    ok = ok && a == ins.n;
    if (!ok) {
      dump("input", text, size);
      dump("output", out, r.sql_len);
      fprintf(stderr, "inserted %zu placeholder(s), output scan found %zu\n", ins.n, out_toks.n);
      for (k = 0; k < ins.n; k++)
        fprintf(stderr, "  inserted $%u at %zu+%zu\n", ins.t[k].number, ins.t[k].off, ins.t[k].len);
      for (k = 0; k < out_toks.n; k++)
        fprintf(stderr, "  scanned $%u at %zu+%zu\n", out_toks.t[k].number, out_toks.t[k].off,
                out_toks.t[k].len);
      FUZZ_CHECK(!"positional scan of the output matches the inserted placeholders");
    }
  }

  free(ins.t);
  free(out_toks.t);
  free(copied);
  mk_sql_named_free(&r);
  free(text);
  return 0;
}

/* mk_sql: SQL text helpers that need no connection: the :name placeholder rewriter,
 * the $n placeholder scanner (and the highest $n, to check a parameter count before
 * sending) and the identifier check for callproc. */
#ifndef MK_SQL_H
#define MK_SQL_H

#include <stddef.h>

typedef struct mk_sql_name {
  size_t off; /* offset of the name (after the ':') in the input SQL */
  size_t len;
} mk_sql_name;

typedef struct mk_sql_named {
  char *sql;           /* rewritten SQL, NUL-terminated, malloc'd */
  size_t sql_len;
  mk_sql_name *names;  /* distinct names in order of first use; names[i] is $(i+1) */
  size_t count;
} mk_sql_named;

/* Rewrites each :name placeholder to $n, where n numbers the distinct names in order
 * of first appearance. A placeholder is ':' followed at once by [A-Za-z_][A-Za-z0-9_]*,
 * where the byte before the ':' (if any) is not ':' (so ::casts are left alone), not
 * '$' and not an identifier character (letter, digit, '_', byte >= 0x80). So array
 * slices such as arr[lo:hi] and arr[1:n] stay as they are, and so does the second name
 * of :a:b (giving $1:b), while x=:v, (:a,:b), [:lo] and " :v" are placeholders; a $n
 * is never glued to what precedes it (lo$1 would be one identifier, $$1 a dollar
 * quote). Nothing inside string literals ('..', E'..', U&'..'), quoted identifiers,
 * dollar-quoted bodies ($$..$$, $tag$..$tag$), -- comments and nested slash-star
 * comments is touched. Unterminated quotes or comments are copied as they are (the
 * server reports them).
 * On success returns 0 and out owns its memory (free with mk_sql_named_free);
 * returns -1 when memory ran out, with nothing to free. */
int mk_sql_named_rewrite(const char *sql, size_t len, mk_sql_named *out);
void mk_sql_named_free(mk_sql_named *n);

/* Calls fn(ud, number, off, len) for each positional placeholder $n (n = 1..65535 written
 * as decimal digits right after '$') found outside literals, quoted identifiers,
 * dollar-quoted bodies and comments (the same lexer as mk_sql_named_rewrite), in order;
 * off/len cover the whole "$n" token, all its digits included. As in PostgreSQL's
 * lexer, a '$' that continues an identifier (a$1, or the e5$1 of 1e5$1) is not a
 * placeholder, while $n right after a number or another parameter is a new one (1$1
 * has $1; $1$2 has $1 and $2). A number that is 0, above 65535 or longer than 5 digits
 * is still reported, with number = 0, so the caller can raise an error. fn returns 0
 * to go on or non-zero to stop; the function returns that value, or 0. No allocation. */
typedef int (*mk_sql_placeholder_fn)(void *ud, unsigned number, size_t off, size_t len);
int mk_sql_scan_positional(const char *sql, size_t len, mk_sql_placeholder_fn fn, void *ud);

/* The highest placeholder number $n in sql, found as mk_sql_scan_positional finds them
 * (0 when there is none). When a placeholder is not a valid number ($0, above 65535),
 * returns -1 and sets *bad_off and *bad_len to the first such token. No allocation. */
int mk_sql_max_positional(const char *sql, size_t len, size_t *bad_off, size_t *bad_len);

/* The longest identifier PostgreSQL keeps, in bytes (NAMEDATALEN - 1); it cuts longer
 * ones to this length. */
#define MK_SQL_NAME_MAX 63

/* 1 if s is a routine name that is safe to splice into SQL: one to three dot-separated
 * parts, each a plain identifier [A-Za-z_][A-Za-z0-9_$]* or a double-quoted one
 * ("..." with "" for a quote, no NUL, not empty), of at most MK_SQL_NAME_MAX bytes (a
 * quoted one counted without its quotes, "" as one byte), so that the server never
 * cuts it to another routine's name; 0 otherwise. */
int mk_sql_is_routine_name(const char *s, size_t len);

/* 1 if sql can go out in libpq's pipeline mode (the extended protocol): at most one
 * statement (one trailing ';' and comments allowed), and not a COPY, which libpq
 * does not run in a pipeline. 0 otherwise. Lexed as mk_sql_scan_positional does. No
 * allocation. */
int mk_sql_pipelinable(const char *sql, size_t len);

/* 1 if the NUL-terminated SQL s starts, after blanks and comments, with the keyword kw
 * (lower case; matched without regard to case, and not as the prefix of a longer word). */
int mk_sql_starts_with_keyword(const char *s, const char *kw);

#endif

/* mk_error: error kinds of the DB-API hierarchy and the error value the core hands to
 * completion callbacks. */
#ifndef MK_ERROR_H
#define MK_ERROR_H

#include <libpq-fe.h>

typedef enum mk_kind {
  MK_ERR_NONE = 0,
  MK_ERR_ERROR,
  MK_ERR_INTERFACE,
  MK_ERR_DATABASE,
  MK_ERR_DATA,
  MK_ERR_OPERATIONAL,
  MK_ERR_INTEGRITY,
  MK_ERR_INTERNAL,
  MK_ERR_PROGRAMMING,
  MK_ERR_NOT_SUPPORTED,
  MK_ERR_QUERY_CANCELED,
  MK_ERR_TX_ROLLBACK,
  MK_ERR_TIMEOUT,
  MK_ERR_POOL,
  MK_ERR_PARTIAL,
  MK_ERR_NOT_AVAILABLE,
  MK_ERR_COUNT
} mk_kind;

/* An error: a kind, a message, and, when the server sent it, the error PGresult with
 * its fields. The holder owns message and res; mk_error_clear frees both. */
typedef struct mk_error {
  mk_kind kind;
  char *message; /* malloc'd; NULL when res carries the message; with res, it says more
                  * than the server's primary message and replaces it */
  PGresult *res;
} mk_error;

/* The kind's name as the Lua side spells it ("IntegrityError"). */
const char *mk_kind_name(mk_kind kind);
/* The kind's parent in the hierarchy; MK_ERR_NONE for Error itself. */
mk_kind mk_kind_parent(mk_kind kind);
/* The kind for a five-character SQLSTATE (NULL or unknown class: DatabaseError). */
mk_kind mk_kind_of_sqlstate(const char *sqlstate);

/* Sets e to kind and a copy of msg with trailing newlines cut (res left NULL). When
 * memory runs out the message is a fixed text; e stays valid either way. */
void mk_error_set(mk_error *e, mk_kind kind, const char *msg);
/* Takes ownership of an error result: kind from its SQLSTATE, or, when it has none
 * (libpq's own errors: a lost connection, or an answer libpq could not understand, the
 * server's fault either way), OperationalError. */
void mk_error_take_result(mk_error *e, PGresult *res);
/* The message to show: the stored text, else the server's primary message. */
const char *mk_error_message(const mk_error *e);
void mk_error_clear(mk_error *e);
/* Moves src into dst (dst must be clear); src is left clear. */
void mk_error_move(mk_error *dst, mk_error *src);

#endif

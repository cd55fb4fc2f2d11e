/* mk_error: the DB-API error hierarchy and SQLSTATE classes, as psycopg2 maps them. */
#include "mk_error.h"

#include <stdlib.h>
#include <string.h>

static const struct {
  const char *name;
  mk_kind parent;
} kinds[MK_ERR_COUNT] = {
  [MK_ERR_NONE] = {"", MK_ERR_NONE},
  [MK_ERR_ERROR] = {"Error", MK_ERR_NONE},
  [MK_ERR_INTERFACE] = {"InterfaceError", MK_ERR_ERROR},
  [MK_ERR_DATABASE] = {"DatabaseError", MK_ERR_ERROR},
  [MK_ERR_DATA] = {"DataError", MK_ERR_DATABASE},
  [MK_ERR_OPERATIONAL] = {"OperationalError", MK_ERR_DATABASE},
  [MK_ERR_INTEGRITY] = {"IntegrityError", MK_ERR_DATABASE},
  [MK_ERR_INTERNAL] = {"InternalError", MK_ERR_DATABASE},
  [MK_ERR_PROGRAMMING] = {"ProgrammingError", MK_ERR_DATABASE},
  [MK_ERR_NOT_SUPPORTED] = {"NotSupportedError", MK_ERR_DATABASE},
  [MK_ERR_QUERY_CANCELED] = {"QueryCanceledError", MK_ERR_OPERATIONAL},
  [MK_ERR_TX_ROLLBACK] = {"TransactionRollbackError", MK_ERR_OPERATIONAL},
  [MK_ERR_TIMEOUT] = {"TimeoutError", MK_ERR_OPERATIONAL},
  [MK_ERR_POOL] = {"PoolError", MK_ERR_ERROR},
  [MK_ERR_PARTIAL] = {"PartiallyConnectedError", MK_ERR_POOL},
  [MK_ERR_NOT_AVAILABLE] = {"DatabaseNotAvailable", MK_ERR_POOL},
};

/* SQLSTATE class (first two characters) to kind. */
static const struct {
  char cls[3];
  mk_kind kind;
} classes[] = {
  {"08", MK_ERR_OPERATIONAL}, {"53", MK_ERR_OPERATIONAL}, {"54", MK_ERR_OPERATIONAL},
  {"55", MK_ERR_OPERATIONAL}, {"57", MK_ERR_OPERATIONAL}, {"58", MK_ERR_OPERATIONAL},
  {"HV", MK_ERR_OPERATIONAL}, {"22", MK_ERR_DATA},        {"23", MK_ERR_INTEGRITY},
  {"24", MK_ERR_INTERNAL},    {"25", MK_ERR_INTERNAL},    {"2B", MK_ERR_INTERNAL},
  {"2D", MK_ERR_INTERNAL},    {"2F", MK_ERR_INTERNAL},    {"38", MK_ERR_INTERNAL},
  {"39", MK_ERR_INTERNAL},    {"3B", MK_ERR_INTERNAL},    {"P0", MK_ERR_INTERNAL},
  {"XX", MK_ERR_INTERNAL},    {"F0", MK_ERR_INTERNAL},    {"20", MK_ERR_PROGRAMMING},
  {"21", MK_ERR_PROGRAMMING}, {"3D", MK_ERR_PROGRAMMING}, {"3F", MK_ERR_PROGRAMMING},
  {"42", MK_ERR_PROGRAMMING}, {"44", MK_ERR_PROGRAMMING}, {"0A", MK_ERR_NOT_SUPPORTED},
  {"40", MK_ERR_TX_ROLLBACK},
};

const char *mk_kind_name(mk_kind kind) {
  return (kind > MK_ERR_NONE && kind < MK_ERR_COUNT) ? kinds[kind].name : "Error";
}

mk_kind mk_kind_parent(mk_kind kind) {
  return (kind > MK_ERR_NONE && kind < MK_ERR_COUNT) ? kinds[kind].parent : MK_ERR_NONE;
}

mk_kind mk_kind_of_sqlstate(const char *s) {
  size_t i;
  if (!s || strlen(s) != 5) return MK_ERR_DATABASE;
  if (strcmp(s, "57014") == 0) return MK_ERR_QUERY_CANCELED;
  for (i = 0; i < sizeof classes / sizeof classes[0]; i++)
    if (s[0] == classes[i].cls[0] && s[1] == classes[i].cls[1]) return classes[i].kind;
  return MK_ERR_DATABASE;
}

static const char oom_message[] = "out of memory";

void mk_error_set(mk_error *e, mk_kind kind, const char *msg) {
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) n--;
  e->kind = kind;
  e->res = NULL;
  e->message = malloc(n + 1);
  if (e->message) {
    memcpy(e->message, msg, n);
    e->message[n] = '\0';
  }
}

void mk_error_take_result(mk_error *e, PGresult *res) {
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  e->message = NULL;
  e->res = res;
  if (state)
    e->kind = mk_kind_of_sqlstate(state);
  else
    e->kind = MK_ERR_OPERATIONAL;
}

const char *mk_error_message(const mk_error *e) {
  if (e->message) return e->message;
  if (e->res) {
    const char *m = PQresultErrorField(e->res, PG_DIAG_MESSAGE_PRIMARY);
    if (m) return m;
    m = PQresultErrorMessage(e->res);
    if (m && *m) return m;
  }
  return oom_message;
}

void mk_error_clear(mk_error *e) {
  free(e->message);
  PQclear(e->res);
  e->message = NULL;
  e->res = NULL;
  e->kind = MK_ERR_NONE;
}

void mk_error_move(mk_error *dst, mk_error *src) {
  *dst = *src;
  src->message = NULL;
  src->res = NULL;
  src->kind = MK_ERR_NONE;
}

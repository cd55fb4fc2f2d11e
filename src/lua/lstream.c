/* lstream: momoko.Stream (see lstream.h).
 *
 * The userdata holds a pointer to a malloc'd record, which the request's hooks use: the
 * record outlives the userdata while the request is out (a stream collected unfinished
 * is cancelled and drained, then the request's end frees the record). What the record
 * needs in Lua sits in a state table that it references (sref) and the userdata has as
 * user value: the owner, its options table, the cursor factory, the cursor that turns
 * a row into Lua, and the SQL. Nothing references the userdata itself, so the GC can
 * collect a stream nobody waits on; a next() that waits is anchored through its future
 * (wref), whose waiting coroutine holds the stream. */
#include "lstream.h"

#include <stdlib.h>
#include <string.h>

#include "lcursor.h"
#include "lerror.h"
#include "lfuture.h"
#include "loptions.h"
#include "lparams.h"
#include "mk_conn.h"

#define LMK_STREAM "momoko.Stream"
#define DEFAULT_CHUNK 1000

/* The state table's fields. */
enum { ST_OWNER = 1, ST_UV, ST_FACTORY, ST_CURSOR, ST_SQL };

typedef struct lstream {
  lowner *o;
  mk_req *r; /* until the request ended */
  lmk_req_cancel_fn cancel;
  int sref;  /* the state table */
  int wref;  /* the future of a next() waiting for a row, or LUA_NOREF */
  int cref;  /* the future close() gave while the request drains, or LUA_NOREF */
  PGresult **rows; /* a ring of chunk rows that arrived and were not taken yet */
  int first, count, chunk;
  PGresult *end; /* the request's last result (row-less): the description without rows */
  mk_error err;  /* the request's error, once it ended */
  int dict;      /* rows keyed by column name */
  int paused;    /* the row hook asked the connection to stop reading */
  int ended;     /* the request ended */
  int closing;   /* close() or the GC: rows are dropped, the end is not an error */
  int cancel_due; /* collected unfinished: the next row cancels the query */
  int gone;      /* the userdata was collected: the end frees the record */
  int pended;    /* the owner is anchored for the request */
  int ending;    /* on_done runs Lua: a finalizer of the userdata leaves the free to it */
  lua_Integer rownumber; /* rows handed out */
  double t0;     /* with a trace function: when the stream was opened */
  int server;    /* where its owner ran it, for the query event (lmk_trace_set_server) */
} lstream;

typedef struct stream_ud {
  lstream *s; /* NULL once freed */
} stream_ud;

static void drop_rows(lstream *s) {
  while (s->count > 0) {
    PQclear(s->rows[s->first]);
    s->rows[s->first] = NULL;
    s->first = (s->first + 1) % s->chunk;
    s->count--;
  }
}

static PGresult *take_row(lstream *s) {
  PGresult *res = s->rows[s->first];
  s->rows[s->first] = NULL;
  s->first = (s->first + 1) % s->chunk;
  s->count--;
  return res;
}

/* Frees the record (its request is not on a connection any more, or never was);
 * unref: drop its registry references too (not at lua_close). */
static void stream_free(lua_State *L, lstream *s, int unref) {
  drop_rows(s);
  free(s->rows);
  PQclear(s->end);
  mk_error_clear(&s->err);
  mk_req_free(s->r);
  if (unref) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->sref);
    luaL_unref(L, LUA_REGISTRYINDEX, s->wref);
    luaL_unref(L, LUA_REGISTRYINDEX, s->cref);
  }
  free(s);
}

/* The consumer took rows: once half of a chunk is free, the connection reads on. */
static void maybe_resume(lstream *s) {
  if (s->paused && s->r && s->count <= s->chunk / 2) {
    s->paused = 0;
    mk_conn_resume(s->r);
  }
}

/* Puts the result *resp (NULL once taken) in the stream's cursor, made on first use;
 * with a row wanted (2 is true), pushes that row in Lua form: cursor:fetchone(), or
 * what a factory function returns for the cursor. Runs under pcall: a decoder or the
 * factory may raise. Light userdata s and resp at 1 and 3. */
static int cursor_lua(lua_State *L) {
  lstream *s = lua_touserdata(L, 1);
  int want_row = lua_toboolean(L, 2);
  PGresult **resp = lua_touserdata(L, 3);
  int st, cur;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->sref);
  st = 1;
  if (lua_rawgeti(L, st, ST_CURSOR) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_rawgeti(L, st, ST_SQL);
    lua_rawgeti(L, st, ST_UV);
    lmk_cursor_push(L, resp, 2, s->dict, 3);
    lua_pushvalue(L, -1);
    lua_rawseti(L, st, ST_CURSOR);
  } else {
    lmk_cursor_replace(L, -1, resp);
  }
  if (!want_row) return 0;
  cur = lua_gettop(L);
  if (lua_rawgeti(L, st, ST_FACTORY) == LUA_TFUNCTION) {
    lua_pushvalue(L, cur);
    lua_call(L, 1, 1);
  } else {
    lua_getfield(L, cur, "fetchone");
    lua_pushvalue(L, cur);
    lua_call(L, 1, 1);
  }
  return 1;
}

/* Runs cursor_lua for *resp, which is cleared if the cursor did not take it. With
 * want_row, pushes the row or, if making it raised, the error; returns 1 for success. */
static int to_cursor(lua_State *L, lstream *s, PGresult **resp, int want_row) {
  int ok;
  lua_pushcfunction(L, cursor_lua);
  lua_pushlightuserdata(L, s);
  lua_pushboolean(L, want_row);
  lua_pushlightuserdata(L, resp);
  ok = lua_pcall(L, 3, want_row, 0) == LUA_OK;
  PQclear(*resp);
  *resp = NULL;
  if (!want_row && !ok) lua_pop(L, 1);
  return ok;
}

/* Pushes the Lua form of row res (taken) or the error making it raised; 1 for a row. */
static int push_row(lua_State *L, lstream *s, PGresult *res) {
  int ok = to_cursor(L, s, &res, 1);
  s->rownumber += ok;
  return ok;
}

/* Settles the future at fidx with what the stream gives now: a row (taken from the
 * ring), or nil at the end, or the stream's error. */
static void settle(lua_State *L, lstream *s, int fidx) {
  fidx = lua_absindex(L, fidx);
  if (s->count > 0) {
    if (push_row(L, s, take_row(s)))
      lmk_future_resolve(L, fidx, 1);
    else
      lmk_future_fail(L, fidx);
    maybe_resume(s);
  } else if (s->ended && !s->closing && s->err.kind != MK_ERR_NONE) {
    lmk_push_mk_error(L, &s->err);
    lmk_future_fail(L, fidx);
  } else {
    lua_pushnil(L);
    lmk_future_resolve(L, fidx, 1);
  }
}

/* Hands a row (or the end) to the next() that waits, if one does. */
static void wake(lua_State *L, lstream *s) {
  if (s->wref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->wref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->wref);
  s->wref = LUA_NOREF;
  settle(L, s, -1);
  lua_pop(L, 1);
}

static int wake_lua(lua_State *L) {
  wake(L, lua_touserdata(L, 1));
  return 0;
}

/* io.row: one row arrived (or, row NULL, the input read so far is used up). */
static int on_row(mk_req *r, PGresult *row, void *ud) {
  lstream *s = ud;
  if (!row) {
    if (s->wref != LUA_NOREF && s->count > 0 && !lmk_silent(s->o)) lmk_enter(s->o->st, wake_lua, s, NULL);
    return 0;
  }
  if (s->closing) {
    PQclear(row);
    if (s->cancel_due) { /* collected unfinished: cancelled from here, where the core may run Lua */
      s->cancel_due = 0;
      s->cancel(s->o, r);
    }
    return 0;
  }
  s->rows[(s->first + s->count) % s->chunk] = row;
  s->count++;
  if (s->count < s->chunk) return 0;
  s->paused = 1;
  return 1;
}

/* The request's end, in Lua: the owner's anchor goes, the waiting next() and close()
 * are settled, the query event is traced. */
static int end_lua(lua_State *L) {
  lstream *s = lua_touserdata(L, 1);
  int uv;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->sref);
  lua_rawgeti(L, 1, ST_UV);
  uv = 2;
  if (s->pended) {
    s->pended = 0;
    lmk_unpend(L, s->o);
  }
  wake(L, s);
  if (s->cref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->cref);
    luaL_unref(L, LUA_REGISTRYINDEX, s->cref);
    s->cref = LUA_NOREF;
    lmk_future_resolve(L, -1, 0);
    lua_pop(L, 1);
  }
  if (s->o->trace) {
    lmk_trace_push_event(L, uv, "query", lmk_trace_clock() - s->t0);
    lmk_trace_set_server(L, uv, s->server);
    lua_rawgeti(L, 1, ST_SQL);
    lua_setfield(L, -2, "sql");
    lua_pushinteger(L, s->rownumber);
    lua_setfield(L, -2, "rows");
    if (s->err.kind != MK_ERR_NONE && !s->closing) {
      lmk_push_mk_error(L, &s->err);
      lua_setfield(L, -2, "error");
    }
    lmk_trace_call(L, uv);
  }
  return 0;
}

/* The core hands the request back. */
static void on_done(mk_req *r, void *ud) {
  lstream *s = ud;
  lua_State *L = s->o->st->L;
  s->ended = 1;
  s->r = NULL;
  s->paused = 0;
  mk_error_move(&s->err, &r->err);
  s->end = mk_req_take_result(r, 0);
  mk_req_free(r);
  if (s->closing) drop_rows(s);
  if (lmk_silent(s->o)) {
    if (s->gone) stream_free(L, s, 0);
    return;
  }
  s->ending = 1; /* what end_lua resumes may drop and collect the stream */
  lmk_enter(s->o->st, end_lua, s, NULL);
  s->ending = 0;
  if (s->gone) stream_free(L, s, 1);
}

static lstream *check_stream(lua_State *L) {
  stream_ud *u = lmk_check_self(L, 1, LMK_STREAM);
  if (!u->s) lmk_raise(L, MK_ERR_INTERFACE, "stream is gone");
  return u->s;
}

/* s:next(): a future of the next row, or of nil after the last. */
static int s_next(lua_State *L) {
  lstream *s = check_stream(L);
  if (s->wref != LUA_NOREF)
    return lmk_raise(L, MK_ERR_INTERFACE, "stream: next() called while another next() waits for a row");
  lmk_future_new(L);
  if (s->count > 0 || s->ended || s->closing) {
    settle(L, s, -1);
    return 1;
  }
  lua_pushvalue(L, -1);
  s->wref = luaL_ref(L, LUA_REGISTRYINDEX);
  maybe_resume(s);
  return 1;
}

/* Stops the stream: rows not taken are dropped, a running query cancelled. */
static void stop(lua_State *L, lstream *s) {
  if (s->ended || s->closing) return;
  s->closing = 1;
  drop_rows(s);
  maybe_resume(s);
  wake(L, s); /* a next() waiting elsewhere gets nil */
  if (s->r) s->cancel(s->o, s->r);
}

/* s:close(): a future resolved once the query ended and the connection is free. */
static int s_close(lua_State *L) {
  lstream *s = check_stream(L);
  stop(L, s);
  lmk_future_new(L);
  if (s->ended) {
    lmk_future_resolve(L, -1, 0);
    return 1;
  }
  if (s->cref == LUA_NOREF) {
    lua_pushvalue(L, -1);
    s->cref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
  }
  lua_pop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->cref);
  return 1;
}

static int s_toclose(lua_State *L) {
  stop(L, check_stream(L));
  return 0;
}

/* __gc: runs no Lua. An unfinished stream is stopped from the core's next callback. */
static int s_gc(lua_State *L) {
  stream_ud *u = lua_touserdata(L, 1);
  lstream *s = u->s;
  if (!s) return 0;
  u->s = NULL;
  if (s->ended && !s->ending) {
    stream_free(L, s, 1);
    return 0;
  }
  s->gone = 1;
  s->closing = 1;
  s->cancel_due = 1;
  drop_rows(s);
  maybe_resume(s);
  return 0;
}

static int s_index(lua_State *L) {
  lstream *s = check_stream(L);
  const char *k = lua_tostring(L, 2);
  if (lmk_owner_method(L), !lua_isnil(L, -1)) return 1;
  lua_settop(L, 2);
  if (!k) return 0;
  if (strcmp(k, "rownumber") == 0) {
    lua_pushinteger(L, s->rownumber);
    return 1;
  }
  if (strcmp(k, "closed") == 0) {
    lua_pushboolean(L, s->closing || (s->ended && s->count == 0));
    return 1;
  }
  if (strcmp(k, "description") == 0) {
    lua_getiuservalue(L, 1, 1);
    if (lua_rawgeti(L, -1, ST_CURSOR) == LUA_TNIL) { /* no row came: from the last result */
      lua_pop(L, 1);
      if (!s->end || PQnfields(s->end) == 0 || !to_cursor(L, s, &s->end, 0)) return 0;
      lua_rawgeti(L, -1, ST_CURSOR);
    }
    lua_getfield(L, -1, "description");
    return 1;
  }
  return 0;
}

static int s_tostring(lua_State *L) {
  lstream *s = check_stream(L);
  lua_pushfstring(L, "<momoko.Stream rownumber=%I%s>", s->rownumber, s->ended ? " ended" : "");
  return 1;
}

int lmk_stream_open(lua_State *L, lowner *o, lmk_stream_submit_fn submit, lmk_req_cancel_fn cancel) {
  int opts = 0, chunk = DEFAULT_CHUNK, kind, dict, st;
  unsigned readonly = 0;
  const char *why = NULL;
  stream_ud *u;
  lstream *s;
  mk_req *r;
  mk_req_io io = {NULL, NULL, NULL, NULL};
  lua_settop(L, 4);
  if (!lua_isnil(L, 4)) {
    if (!lua_istable(L, 4)) return lmk_raise(L, MK_ERR_INTERFACE, "stream: opts must be a table");
    opts = 4;
  }
  lmk_params_check(L, 2, 3); /* 5: the prepared statement */
  if (opts) {
    if (lua_getfield(L, opts, "chunk") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > 1000000)
        return lmk_raise(L, MK_ERR_INTERFACE, "stream: opts.chunk must be an integer from 1 to 1000000");
      chunk = (int)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    readonly = lmk_req_readonly_opt(L, opts, "stream");
    lua_getfield(L, opts, "cursor_factory");
    if (!lua_isnil(L, -1)) lmk_check_factory(L, -1, "opts");
  } else {
    lua_pushnil(L);
  }
  /* 6: the factory; the owner's own without one of the request */
  if (lua_isnil(L, 6)) {
    lua_pop(L, 1);
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, "cursor_factory");
    lua_remove(L, -2);
  }
  dict = lua_type(L, 6) == LUA_TSTRING && strcmp(lua_tostring(L, 6), "dict") == 0;
  lua_createtable(L, 5, 0); /* 7: the state table */
  st = 7;
  lua_pushvalue(L, 1);
  lua_rawseti(L, st, ST_OWNER);
  lua_getiuservalue(L, 1, 1);
  lua_rawseti(L, st, ST_UV);
  lua_pushvalue(L, 6);
  lua_rawseti(L, st, ST_FACTORY);
  lmk_params_push_sql(L, 5);
  lua_rawseti(L, st, ST_SQL);
  u = lua_newuserdatauv(L, sizeof *u, 1); /* 8 */
  u->s = NULL;
  luaL_setmetatable(L, LMK_STREAM);
  lua_pushvalue(L, st);
  lua_setiuservalue(L, -2, 1);
  s = calloc(1, sizeof *s);
  r = s ? mk_req_new(1, MK_REQ_STREAM | readonly, 0, on_done, s) : NULL;
  if (s) s->rows = calloc((size_t)chunk, sizeof *s->rows);
  if (!s || !r || !s->rows || lmk_params_fill(L, r, 0, 5) < 0) {
    if (s) free(s->rows);
    free(s);
    mk_req_free(r);
    return lmk_raise(L, MK_ERR_INTERFACE, "not enough memory");
  }
  s->o = o;
  s->r = r;
  s->cancel = cancel;
  s->chunk = chunk;
  s->dict = dict;
  s->wref = s->cref = LUA_NOREF;
  s->t0 = o->trace ? lmk_trace_clock() : 0;
  lua_pushvalue(L, st);
  s->sref = luaL_ref(L, LUA_REGISTRYINDEX);
  u->s = s;
  io.row = on_row;
  io.ud = s;
  mk_req_set_io(r, &io);
  lmk_pend(L, o, 1);
  s->pended = 1;
  kind = submit(o, r, &s->server, &why);
  if (kind) { /* refused: the stream ended with that error */
    s->r = NULL;
    s->ended = 1;
    mk_req_free(r);
    mk_error_set(&s->err, (mk_kind)kind, why ? why : "refused");
    s->pended = 0;
    lmk_unpend(L, o);
  }
  lua_settop(L, 8);
  return 1;
}

void lmk_open_stream(lua_State *L) {
  static const luaL_Reg meta[] = {{"__index", s_index},
                                  {"__gc", s_gc},
                                  {"__close", s_toclose},
                                  {"__tostring", s_tostring},
                                  {NULL, NULL}};
  static const luaL_Reg methods[] = {{"next", s_next}, {"close", s_close}, {NULL, NULL}};
  lmk_open_owner_class(L, LMK_STREAM, meta, methods, "Stream_methods");
}

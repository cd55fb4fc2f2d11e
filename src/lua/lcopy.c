/* lcopy: COPY data from and to Lua (see lcopy.h). */
#include "lcopy.h"

#include <lauxlib.h>

#include "lerror.h"
#include "mk_copy.h"

/* COPY data handed to libpq at a time: large enough that the per-call cost vanishes,
 * small enough that a function source is not asked for much more than the socket takes. */
#define PIECE_BYTES 65536

void lmk_copy_check_source(lua_State *L, int idx, const char *who) {
  int t = lua_type(L, idx);
  if (t != LUA_TSTRING && t != LUA_TTABLE && t != LUA_TFUNCTION)
    lmk_raise(L, MK_ERR_INTERFACE, "%s: source must be a string, an array or a function, got %s", who,
              luaL_typename(L, idx));
}

static int tostring_lua(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Replaces the error value on top with its text (its __tostring may raise). */
static void error_text(lua_State *L) {
  lua_pushcfunction(L, tostring_lua);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "(an error value without a text)");
  }
}

/* Appends the value at idx of a row table as one COPY value. 0, 1 when it cannot be
 * encoded, -1 when memory ran out. */
static int add_value(lua_State *L, mk_buf *b, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return mk_copy_add_value(b, s, len);
  }
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) return mk_copy_add_int(b, (long long)lua_tointeger(L, idx));
    return mk_copy_add_float(b, (double)lua_tonumber(L, idx));
  case LUA_TBOOLEAN:
    return mk_copy_add_bool(b, lua_toboolean(L, idx));
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) return mk_copy_add_null(b); /* momoko.null */
    return 1;
  default:
    return 1;
  }
}

/* Appends item number cp->item, at idx: a string as it is, a row table encoded. 0, or
 * -1 with a message pushed. */
static int add_item(lua_State *L, lcopy *cp, int idx) {
  lua_Integer j, n;
  size_t start = cp->buf.len;
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (mk_buf_add(&cp->buf, s, len) < 0) goto nomem;
    return 0;
  }
  if (!lua_istable(L, idx)) {
    lua_pushfstring(L, "copy_from: item %I of the source is a %s, not a string or a row table", cp->item,
                    luaL_typename(L, idx));
    return -1;
  }
  n = (lua_Integer)lua_rawlen(L, idx);
  for (j = 1; j <= n; j++) {
    int rc = j > 1 ? mk_copy_next_column(&cp->buf) : 0;
    lua_rawgeti(L, idx, j);
    if (rc == 0) rc = add_value(L, &cp->buf, lua_gettop(L));
    if (rc > 0) {
      cp->buf.len = start;
      lua_pushfstring(L,
                      "copy_from: item %I of the source, value %I: a %s cannot be encoded in COPY format "
                      "(strings, numbers, booleans and momoko.null can)",
                      cp->item, j, lua_isnil(L, -1) ? "nil (momoko.null is NULL)" : luaL_typename(L, -1));
      lua_remove(L, -2);
      return -1;
    }
    lua_pop(L, 1);
    if (rc < 0) goto nomem;
  }
  if (mk_copy_end_row(&cp->buf) < 0) goto nomem;
  return 0;
nomem:
  cp->buf.len = start;
  lua_pushliteral(L, "copy_from: not enough memory");
  return -1;
}

int lmk_copy_next(lua_State *L, lcopy *cp, int srcidx, const char **data, size_t *len) {
  srcidx = lua_absindex(L, srcidx);
  *data = NULL;
  *len = 0;
  if (lua_type(L, srcidx) == LUA_TSTRING) {
    size_t total;
    const char *s = lua_tolstring(L, srcidx, &total);
    if (cp->str_off >= total) return 0;
    *data = s + cp->str_off;
    *len = total - cp->str_off < PIECE_BYTES ? total - cp->str_off : PIECE_BYTES;
    cp->str_off += *len;
    return 1;
  }
  cp->buf.len = 0;
  while (!cp->ended && cp->buf.len < PIECE_BYTES) {
    int t;
    luaL_checkstack(L, 4, "copy_from");
    if (lua_istable(L, srcidx)) {
      t = lua_rawgeti(L, srcidx, cp->item + 1);
    } else {
      lua_pushvalue(L, srcidx);
      if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        error_text(L);
        lua_pushfstring(L, "copy_from: the source raised an error: %s", lua_tostring(L, -1));
        lua_remove(L, -2);
        return -1;
      }
      t = lua_type(L, -1);
    }
    if (t == LUA_TNIL) {
      cp->ended = 1;
      lua_pop(L, 1);
      break;
    }
    cp->item++;
    if (add_item(L, cp, lua_gettop(L)) < 0) {
      lua_remove(L, -2);
      return -1;
    }
    lua_pop(L, 1);
  }
  if (cp->buf.len == 0) return 0;
  *data = cp->buf.data;
  *len = cp->buf.len;
  return 1;
}

int lmk_copy_sink(lua_State *L, lcopy *cp, int sinkidx, const char *data, size_t len) {
  cp->rows++;
  lua_pushvalue(L, sinkidx);
  lua_pushlstring(L, data, len);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    error_text(L);
    lua_pushfstring(L, "copy_to: the sink raised an error: %s", lua_tostring(L, -1));
    lua_remove(L, -2);
    return -1;
  }
  return 0;
}

int lmk_copy_collect(lcopy *cp, const char *data, size_t len) {
  if (mk_buf_add(&cp->buf, data, len) < 0) return -1;
  cp->rows++;
  return 0;
}

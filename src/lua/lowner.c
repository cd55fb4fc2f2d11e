/* lowner: anchoring and finding Connection and Pool userdata (see lowner.h). */
#include "lowner.h"

#include <string.h>

void lmk_pend(lua_State *L, lowner *o, int idx) {
  if (o->pending++ == 0) {
    lua_pushvalue(L, idx);
    o->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

void lmk_unpend(lua_State *L, lowner *o) {
  if (--o->pending == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, o->anchor);
    o->anchor = LUA_NOREF;
  }
}

static const char owners_key = 'O'; /* registry: weak lightuserdata(owner) -> userdata */

void lmk_push_owner(lua_State *L, lowner *o) {
  if (o->pending > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, o->anchor);
    return;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &owners_key);
  lua_rawgetp(L, -1, o);
  lua_remove(L, -2);
}

lowner *lmk_owner_new(lua_State *L, size_t size, const char *mt, int uv) {
  lowner *o;
  uv = lua_absindex(L, uv);
  o = lua_newuserdatauv(L, size, 2);
  memset(o, 0, size);
  o->st = lmk_state_of(L);
  o->anchor = LUA_NOREF;
  o->finalized = 1;
  luaL_setmetatable(L, mt);
  o->trace = lua_getfield(L, uv, "trace") == LUA_TFUNCTION;
  lua_pop(L, 1);
  lua_pushvalue(L, uv);
  lua_setiuservalue(L, -2, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &owners_key);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, o);
  lua_pop(L, 1);
  return o;
}

int lmk_owner_method(lua_State *L) {
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

void lmk_open_owner_class(lua_State *L, const char *mt, const luaL_Reg *meta, const luaL_Reg *methods,
                          const char *field) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &owners_key) != LUA_TTABLE) {
    lmk_push_weak_table(L, "v");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &owners_key);
  }
  lua_pop(L, 1);
  luaL_newmetatable(L, mt);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");
  lua_getfield(L, -3, "_private"); /* private[field]: the Lua layer adds methods there */
  lua_insert(L, -2);
  lua_setfield(L, -2, field);
  lua_pop(L, 2);
}

int lmk_silent(const lowner *o) { return o->finalized || o->st->closing; }

/* loptions: checking the options tables of Connection and Pool, and reading the
 * checked copy (the object's options table, user value 1) back. Every bad option
 * raises InterfaceError naming the constructor, before anything is allocated.
 * Internal. */
#ifndef LOPTIONS_H
#define LOPTIONS_H

#include "lstate.h"

/* Raises unless every key of the table at opts is one of known (NULL-terminated). */
void lmk_options_known(lua_State *L, int opts, const char *const *known, const char *who);
/* Checks and copies the options shared by Connection and Pool from the table at opts
 * into the table at uv: dsn (parsed now: a malformed one raises; host, hostaddr, port
 * and dbname are kept for tostring, never the password), setsession, cursor_factory,
 * connection_factory, on_notice, pipeline (boolean), pgbouncer (boolean: PgBouncer in
 * transaction mode), statement_cache_size (0 to 100000, default 100, or 0 with pgbouncer,
 * which refuses any other), trace (a function or nil), command_timeout (ms, a non-negative integer; 0, the default, for none;
 * lreq.c reads it), an empty decoders table and an empty types
 * table (ltypes.c). Returns the loop. */
mk_loop *lmk_options_shared(lua_State *L, int opts, int uv, const char *who);
/* Checks the replicas option of the table at opts (nil, or an array of DSN strings,
 * each parsed now: anything else raises) and sets uv.replicas to an array of
 * {dsn =, host =, hostaddr =, port =, dbname =} (what the DSN sets of the last four).
 * Returns the number of replicas. */
int lmk_options_replicas(lua_State *L, int opts, int uv, const char *who);
/* Pushes the host (or hostaddr, or nil) of replica number replica (1-based, one of
 * uv.replicas) of the options table at uv. */
void lmk_options_replica_host(lua_State *L, int uv, int replica);
/* An integer option of the table at opts within [min, max], or def when absent. */
int lmk_opt_int(lua_State *L, int opts, const char *name, int def, lua_Integer min, lua_Integer max,
                const char *who);
/* A boolean option, or def when absent. */
int lmk_opt_bool(lua_State *L, int opts, const char *name, int def, const char *who);
/* Checks a cursor_factory value (nil, "array", "dict", function); 1 for "dict". */
int lmk_check_factory(lua_State *L, int idx, const char *who);
/* Pushes an array of the setsession strings of the options table at uv (or nil) and
 * returns it (a userdata, freed by the GC); the strings stay anchored by that table. */
const char **lmk_setsession(lua_State *L, int uv, int *n);
/* Calls the on_notice function of the options table at uvidx, if any, with the object
 * at objidx and msg without its trailing newline. */
void lmk_call_notice(lua_State *L, int uvidx, int objidx, const char *msg);
/* Tracing (API §10): only called when the owner has a trace function (lowner.trace).
 * Monotonic milliseconds, for the ms of events. Runs no Lua. */
double lmk_trace_clock(void);
/* Pushes a new event table {type = type, host = the host (or hostaddr) of the dsn of the
 * options table at uv, ms = ms unless ms < 0}. */
void lmk_trace_push_event(lua_State *L, int uv, const char *type, double ms);
/* Sets the host of the event table on top to that of the server numbered server of
 * the options table at uv: 0 (nothing changes) is the dsn, i > 0 its replica i. */
void lmk_trace_set_server(lua_State *L, int uv, int server);
/* Pops the event table on top and calls the trace function of the options table at uv
 * with it (nothing when there is none). Runs user Lua: raises what it raises; callers
 * call it under lmk_enter or a pcall whose error goes to lmk_report (on_error). */
void lmk_trace_call(lua_State *L, int uv);

#endif

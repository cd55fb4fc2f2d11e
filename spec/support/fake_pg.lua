-- A tiny fake PostgreSQL server on 127.0.0.1 for the specs: just enough of protocol v3
-- for libpq to connect (no SSL, no authentication), then an answer to every query that
-- is well-formed or broken on purpose, as the query's text asks.
--
-- Used from a spec:  local fake = require("fake_pg").start(seconds)
-- gives {port =, pid =, stop = function}: a child lua5.4 (luv) that serves until
-- stop() or until `seconds` (default 30) have passed. Run as a script
-- (lua5.4 fake_pg.lua serve SECONDS), it is that child: it prints "PORT PID".
--
-- The answers, simple ('Q') or extended protocol (Parse/Bind/Describe/Execute, answered
-- at the Sync), each followed by ReadyForQuery (idle):
--   a query with "fake:MODE" in its text gets the answer MODES[MODE] below;
--   any other query gets one row of one text column "n": the number of queries this
--   connection has received so far, this one included ("1" for the first).
-- A cancel request is read and its connection closed, with no effect, except on a query
-- with "fake:hang" in its text: that one gets no answer until a second cancel request
-- for its connection arrives (PostgreSQL ignores a cancel request that reaches a
-- backend between two commands; this makes that happen every time), then fails with
-- 57014 as a cancelled statement does.
local M = {}

local pack = string.pack

local function msg(kind, body)
  return kind .. pack(">i4", 4 + #body) .. body
end

local function row_description(name, oid)
  return msg("T", pack(">i2", 1) .. name .. "\0" .. pack(">i4i2i4i2i4i2", 0, 0, oid, -1, -1, 0))
end

local function data_row(...)
  local body = pack(">i2", select("#", ...))
  for _, v in ipairs({...}) do body = body .. pack(">i4", #v) .. v end
  return msg("D", body)
end

local function complete(tag)
  return msg("C", tag .. "\0")
end

--- Broken answers, by name: what libpq receives after ParseComplete/BindComplete (in
--- the extended protocol) and before ReadyForQuery.
M.MODES = {
  -- RowDescription that announces one column and carries none
  short_T = msg("T", pack(">i2", 1)) .. complete("SELECT 0"),
  -- ParameterDescription that announces two parameters and carries one
  short_t = msg("t", pack(">i2i4", 2, 23)) .. complete("SELECT 0"),
  -- DataRow with no RowDescription before it
  D_without_T = data_row("1") .. complete("SELECT 1"),
  -- DataRow with two values for a one-column RowDescription
  field_count = row_description("n", 25) .. data_row("1", "2") .. complete("SELECT 1"),
  -- a message type the protocol does not have
  unknown_type = msg("~", "junk"),
  -- CommandComplete whose length says one byte more than its contents
  length_mismatch = msg("C", "SELECT 0\0\0"),
  -- a length word below 4: libpq loses the message boundaries
  sync_loss = "C" .. pack(">i4", 2),
}

local CANCELED = msg("E", "SERROR\0VERROR\0C57014\0Mcanceling statement due to user request\0\0")

local function serve(seconds)
  local uv = require "luv"
  local server = uv.new_tcp()
  local hanging = {} -- backend pid -> {cancels =, finish = fn}, queries waiting for cancels
  local next_pid = 1000
  assert(server:bind("127.0.0.1", 0))

  local function on_client(client)
    local buf, started, queries = "", false, 0
    next_pid = next_pid + 1
    local pid = next_pid
    local extended_sql -- the text of the last Parse, answered at the Sync

    local function send(s)
      if not client:is_closing() then client:write(s) end
    end

    local function answer(sql, extended)
      queries = queries + 1
      local mode = sql:match("fake:([%w_]+)")
      local out = extended and (msg("1", "") .. msg("2", "")) or ""
      if mode == "hang" then
        hanging[pid] = {cancels = 0, finish = function() send(out .. CANCELED .. msg("Z", "I")) end}
        return
      end
      if mode and M.MODES[mode] then
        out = out .. M.MODES[mode]
      else
        out = out .. row_description("n", 25) .. data_row(tostring(queries)) .. complete("SELECT 1")
      end
      send(out .. msg("Z", "I"))
    end

    local function startup(len)
      local code = string.unpack(">i4", buf, 5)
      local target = code == 80877102 and len >= 16 and string.unpack(">i4", buf, 9) -- its backend pid
      buf = buf:sub(len + 1)
      if code == 80877103 or code == 80877104 then -- SSLRequest, GSSENCRequest: no
        send("N")
      elseif code == 80877102 then -- CancelRequest: only a "fake:hang" query heeds one, the second
        local h = target and hanging[target]
        if h then
          h.cancels = h.cancels + 1
          if h.cancels >= 2 then
            hanging[target] = nil
            h.finish()
          end
        end
        client:close()
      else
        started = true
        local out = msg("R", pack(">i4", 0))
        for _, kv in ipairs({{"server_version", "15.0"}, {"server_encoding", "UTF8"},
            {"client_encoding", "UTF8"}, {"standard_conforming_strings", "on"},
            {"integer_datetimes", "on"}, {"DateStyle", "ISO, MDY"}}) do
          out = out .. msg("S", kv[1] .. "\0" .. kv[2] .. "\0")
        end
        send(out .. msg("K", pack(">i4i4", pid, 4242)) .. msg("Z", "I"))
      end
    end

    local function message(kind, body)
      if kind == "Q" then
        answer(body:match("^[^%z]*"), false)
      elseif kind == "P" then
        extended_sql = body:match("^[^%z]*%z([^%z]*)") or ""
      elseif kind == "S" then
        answer(extended_sql or "", true)
        extended_sql = nil
      elseif kind == "X" then
        client:close()
      end -- Bind, Describe, Execute, Flush: answered at the Sync
    end

    client:read_start(function(err, data)
      if err or not data then
        if not client:is_closing() then client:close() end
        return
      end
      buf = buf .. data
      while not client:is_closing() do
        if not started then
          if #buf < 8 then return end
          local len = string.unpack(">i4", buf)
          if #buf < len then return end
          startup(len)
        else
          if #buf < 5 then return end
          local len = string.unpack(">i4", buf, 2)
          if #buf < len + 1 then return end
          local kind, body = buf:sub(1, 1), buf:sub(6, len + 1)
          buf = buf:sub(len + 2)
          message(kind, body)
        end
      end
    end)
  end

  assert(server:listen(16, function(err)
    assert(not err, err)
    local client = uv.new_tcp()
    server:accept(client)
    on_client(client)
  end))
  io.stdout:write(server:getsockname().port, " ", uv.os_getpid(), "\n")
  io.stdout:flush()
  uv.new_timer():start(math.floor(seconds * 1000), 0, function() uv.stop() end)
  uv.run()
end

--- Starts the fake server in a child lua5.4; see the top of this file.
function M.start(seconds)
  local path = assert(package.searchpath("fake_pg", package.path), "fake_pg.lua not on package.path")
  local p = assert(io.popen(string.format("exec env -u LD_PRELOAD lua5.4 %q serve %d", path,
    math.floor(seconds or 30))))
  return require("helper").child_server(p, "fake_pg")
end

if arg and arg[0] and arg[0]:match("fake_pg%.lua$") and arg[1] == "serve" then
  serve(tonumber(arg[2]) or 30)
end

return M

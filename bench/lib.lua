-- Shared helpers of the bench/ Lua clients: a wall clock, this process's CPU time, and the
-- one machine-readable result line that bench/run parses:
--   BENCH <workload> <client> <ops> <wall_seconds> <cpu_seconds>
-- Wall time comes from luv's uv.hrtime() (monotonic, ns); CPU time is utime + stime from
-- /proc/self/stat (clock ticks, 10 ms each). Both are taken after connect and warm-up.
-- The momoko clients take their Connection/Pool options through B.options, which adds
-- what bench/run sets in the environment: BENCH_PIPELINE=1 (pipeline = true) and
-- BENCH_STATEMENT_CACHE=N (statement_cache_size = N) and BENCH_TRACE=1 (a trace function
-- that does nothing: what tracing costs); unset, the library's defaults hold.
local uv = require "luv"
local M = {}

M.seconds = tonumber(arg and arg[1]) or 5
M.dsn = os.getenv("MOMOKO_DSN") or os.getenv("MOMOKO_TEST_DSN")
local ticks = tonumber(os.getenv("BENCH_CLK_TCK") or "") or 100

-- opts with the environment's pipeline and statement_cache_size added; returns opts.
function M.options(opts)
  if os.getenv("BENCH_PIPELINE") == "1" then opts.pipeline = true end
  if os.getenv("BENCH_TRACE") == "1" then opts.trace = function() end end
  local cache = os.getenv("BENCH_STATEMENT_CACHE")
  if cache and cache ~= "" then
    opts.statement_cache_size = assert(math.tointeger(tonumber(cache)), "BENCH_STATEMENT_CACHE: an integer")
  end
  return opts
end

function M.now() return uv.hrtime() / 1e9 end

function M.cpu()
  local f = assert(io.open("/proc/self/stat"))
  local s = f:read("a")
  f:close()
  -- field 2 (comm) is in parentheses and may hold spaces: split after the last ')'
  local rest = s:match("%) (.*)$")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- rest starts at field 3 (state): utime is field 14, stime field 15
  return (tonumber(fields[12]) + tonumber(fields[13])) / ticks
end

-- A meter: start() after warm-up, stop(ops) prints the result line.
function M.meter(workload, client)
  local m = {}
  function m.start() m.t0, m.c0 = M.now(), M.cpu() end
  function m.stop(ops)
    local wall, cpu = M.now() - m.t0, M.cpu() - m.c0
    io.write(string.format("BENCH %s %s %d %.6f %.3f\n", workload, client, ops, wall, cpu))
    io.flush()
  end
  return m
end

return M

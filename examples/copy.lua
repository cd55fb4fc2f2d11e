-- COPY (docs/api.md, COPY; docs/guide.md): bulk load from a Lua function, export into a
-- sink function, and export as one string.
-- Run with MOMOKO_DSN set (e.g. "host=127.0.0.1 dbname=postgres").
local momoko = require "momoko"

local dsn = os.getenv("MOMOKO_DSN") or "host=127.0.0.1 dbname=postgres"
local conn = momoko.connect(dsn):await()
conn:execute("CREATE TEMP TABLE items (id int PRIMARY KEY, name text, price numeric, note text)"):await()

-- Load: the source is called from the loop as the socket takes data, so it must not await.
-- Each call returns one row table (encoded by the library: tabs, newlines escaped, NULL as \N)
-- or nil at the end.
local N, i = 10000, 0
local function source()
  if i == N then return nil end
  i = i + 1
  return {i, "item\t" .. i, i * 0.25, i % 100 == 0 and "every\nhundredth" or momoko.null}
end
local loaded = conn:copy_from("COPY items (id, name, price, note) FROM STDIN", source):await()
print("copy_from loaded", loaded, "rows")

local cur = conn:execute("SELECT count(*), sum(price), count(note) FROM items"):await()
local row = cur:fetchone()
print("in the table:", row[1], "rows, sum(price) =", row[2], ", notes:", row[3])

-- Export into a sink: sink(line) is called for every row as it arrives (it must not await
-- either); the future resolves to the row count.
local bytes, first = 0, nil
local exported = conn:copy_to("COPY (SELECT * FROM items ORDER BY id) TO STDOUT (FORMAT csv)",
                              function(line)
                                bytes = bytes + #line
                                first = first or line
                              end):await()
print("copy_to with a sink:", exported, "rows,", bytes, "bytes; first line:", (first:gsub("\n$", "")))

-- Without a sink the future resolves to all the data as one string: for small results only.
local text = conn:copy_to("COPY (SELECT id, name, note FROM items WHERE id % 5000 = 0 ORDER BY id) TO STDOUT"):await()
io.write("copy_to without a sink (", #text, " bytes):\n", text)

-- A bad row rolls the whole COPY back; the connection stays usable.
local ok, err = pcall(function()
  return conn:copy_from("COPY items (id, name) FROM STDIN", {{N + 1, "fine"}, {N + 2, {}}}):await()
end)
print("bad row:", ok, tostring(err))
print("rows after the failed COPY:", conn:execute("SELECT count(*) FROM items"):await():fetchone()[1])

conn:execute("DROP TABLE items"):await()
conn:close()

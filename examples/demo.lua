-- The README's demo: concurrent request handlers on one connection.
-- Run with scripts/demo (starts a throwaway PostgreSQL), or with MOMOKO_DSN set.
local momoko = require "momoko"

local dsn = os.getenv("MOMOKO_DSN") or "host=127.0.0.1 dbname=postgres"
local conn = momoko.connect(dsn):await()          -- main thread: runs the loop until done
print("connected:", conn)

conn:execute([[CREATE TEMP TABLE users (id int PRIMARY KEY, name text, tags text[])]]):await()
conn:transaction{
  {"INSERT INTO users VALUES ($1, $2, $3)", {1, "ada", {"math", "engines"}}},
  {"INSERT INTO users VALUES (:id, :name, :tags)", {id = 2, name = "grace", tags = {"cobol"}}},
}:await()

-- Each handler is a coroutine; await suspends it, the others keep running.
local function handler(id)
  local cur = conn:execute("SELECT id, name, tags, pg_sleep(0.05) FROM users WHERE id = $1",
                           {id}, {cursor_factory = momoko.cursors.dict}):await()
  local row = cur:fetchone()
  return string.format("user %d: %s [%s]", row.id, row.name, table.concat(row.tags, ", "))
end

local started = os.time()
local results = momoko.all{momoko.spawn(handler, 1), momoko.spawn(handler, 2)}:await()
for _, line in ipairs(results) do print(line) end

-- Errors are typed tables carrying the server's fields.
local ok, err = pcall(function()
  return conn:execute("INSERT INTO users VALUES (1, 'again', NULL)"):await()
end)
print("duplicate insert:", ok, tostring(err))
print("is IntegrityError:", momoko.is(err, "IntegrityError"), "constraint:", err.constraint)

print("mogrify:", conn:mogrify("SELECT :name, :n", {name = "O'Reilly", n = 42}))
conn:close()
print("done in about", os.time() - started, "s")

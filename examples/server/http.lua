-- A minimal HTTP/1.1 server on luv that answers JSON (lua-cjson). It knows nothing of
-- momoko: each request runs handler(req) in a coroutine of its own (a plain
-- coroutine.wrap), so the handler may await; what it returns is the answer.
--
--   http.serve{host =, port =, handler = fn(req) -> status, value, on_error = fn(err, tb)}
--
-- req = {method =, target =, path =, query = {name = value}, version = "1.1",
--        headers = {lower-case name = value}, body = string}.
-- Requests on one connection are answered in order, one at a time (keep-alive and
-- pipelining); a connection closes after an answer when the client asked for it
-- (HTTP/1.0 without keep-alive, "Connection: close") or sent something unparsable.
local uv = require "luv"
local cjson = require "cjson"

local http = {}

local MAX_HEAD = 16 * 1024        -- request line and headers
local MAX_BODY = 1024 * 1024      -- Content-Length
local REASONS = {
  [200] = "OK", [400] = "Bad Request", [404] = "Not Found", [405] = "Method Not Allowed",
  [413] = "Content Too Large", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented",
}

local function percent_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

local function parse_query(text)
  local query = {}
  for pair in text:gmatch("[^&]+") do
    local name, value = pair:match("^([^=]*)=?(.*)$")
    query[percent_decode(name)] = percent_decode(value)
  end
  return query
end

-- A token's characters (RFC 9110 tchar), for header names.
local HEADER_LINE = "^([%w!#$%%&'*+%-.^_`|~]+):[ \t]*(.-)[ \t]*$"

--- Parses the request at the start of buf. Returns req and the length it took; nil if
--- buf does not hold a whole request yet; or nil, status, message for a bad request.
function http.parse_request(buf)
  local head_end = buf:find("\r\n\r\n", 1, true)
  if not head_end then
    if #buf > MAX_HEAD then return nil, 431, "request head too large" end
    return nil
  end
  if head_end > MAX_HEAD then return nil, 431, "request head too large" end
  local lines = {}
  for line in buf:sub(1, head_end + 1):gmatch("(.-)\r\n") do lines[#lines + 1] = line end
  local method, target, version = lines[1]:match("^(%u+) (%S+) HTTP/(1%.[01])$")
  if not method then return nil, 400, "bad request line" end
  local headers = {}
  for i = 2, #lines do
    local name, value = lines[i]:match(HEADER_LINE)
    if not name then return nil, 400, "bad header line" end
    name = name:lower()
    if headers[name] and name == "content-length" and headers[name] ~= value then
      return nil, 400, "conflicting Content-Length"
    end
    headers[name] = headers[name] and name ~= "content-length" and (headers[name] .. ", " .. value) or value
  end
  if headers["transfer-encoding"] then return nil, 501, "Transfer-Encoding is not supported" end
  local length = 0
  if headers["content-length"] then
    if not headers["content-length"]:match("^%d+$") then return nil, 400, "bad Content-Length" end
    length = tonumber(headers["content-length"])
    if length > MAX_BODY then return nil, 413, "body too large" end
  end
  local total = head_end + 3 + length
  if #buf < total then return nil end
  local path, query = target:match("^([^?#]*)%??([^#]*)")
  local req = {
    method = method, target = target, path = percent_decode(path), query = parse_query(query),
    version = version, headers = headers, body = buf:sub(head_end + 4, total),
  }
  local connection = (headers.connection or ""):lower()
  if version == "1.0" then
    req.keep_alive = connection:find("keep-alive", 1, true) ~= nil
  else
    req.keep_alive = connection:find("close", 1, true) == nil
  end
  return req, total
end

--- The bytes of an answer: status, a JSON body and the framing headers.
function http.format_response(status, value, keep_alive)
  local body = cjson.encode(value)
  return table.concat{
    "HTTP/1.1 ", status, " ", REASONS[status] or "Unknown", "\r\n",
    "Content-Type: application/json\r\n",
    "Content-Length: ", #body, "\r\n",
    keep_alive and "" or "Connection: close\r\n",
    "\r\n", body,
  }
end

-- One client connection: its socket, the bytes read and not parsed yet, whether a
-- request of it is being answered, and whether it closes after that answer.
local Client = {}
Client.__index = Client

function Client:close()
  if self.closed then return end
  self.closed = true
  self.server.clients[self] = nil
  self.tcp:close()
end

-- Writes an answer; the next request is started once it was written.
function Client:answer(status, value, keep_alive)
  if self.closed then return end
  keep_alive = keep_alive and not self.peer_done
  local queued = self.tcp:write(http.format_response(status, value, keep_alive), function(err)
    self.busy = false
    if err or not keep_alive then return self:close() end
    self:pump()
  end)
  if not queued then self:close() end -- the socket refused it: no callback will come
end

-- The answer of one request, a to-be-closed value in its coroutine: a coroutine that
-- ends by an error without answering (the error unwinds it, and its to-be-closed
-- variables are closed) answers 500.
local Reply = {}
Reply.__index = Reply

function Reply:send(status, value)
  if self.sent then error("http: this request was answered already", 2) end
  self.sent = true
  self.client:answer(status, value, self.req.keep_alive)
end

function Reply:__close()
  if not self.sent then self:send(500, {error = "internal server error"}) end
end

-- The body of each request's coroutine.
local function run_request(client, req)
  local reply <close> = setmetatable({client = client, req = req}, Reply)
  local status, value = client.server.handler(req)
  if type(status) ~= "number" then
    error("http: the handler returned no status for " .. req.target, 0)
  end
  reply:send(status, value)
end

-- Starts the next whole request buffered, unless one is being answered.
function Client:pump()
  if self.busy or self.closed then return end
  local req, used, message = http.parse_request(self.buf)
  if not req then
    if used then -- a bad request: answered, then the connection closes
      self.busy = true
      self.buf = ""
      self:answer(used, {error = message}, false)
    elseif self.peer_done then
      self:close()
    end
    return
  end
  self.buf = self.buf:sub(used + 1)
  self.busy = true
  self.server.requests = self.server.requests + 1
  -- The request's own coroutine. It runs here until its first await; momoko resumes
  -- it after each await, and reports an error raised after one to momoko.on_error
  -- (closing the Reply, which answers 500). An error before the first await comes back
  -- from this call (the Reply was closed all the same): it goes to on_error here.
  local ok, err = pcall(coroutine.wrap(run_request), self, req)
  if not ok then self.server.on_error(err, nil) end
end

function Client:on_read(err, data)
  if err then return self:close() end -- reset: an answer still being made is dropped
  if not data then -- the peer is done sending: answer what it sent, then close
    self.peer_done = true
    self.tcp:read_stop()
    return self:pump()
  end
  self.buf = self.buf .. data
  if #self.buf > MAX_HEAD + MAX_BODY then -- more than one request can be: stop reading
    self.tcp:read_stop()
    self.buf = ""
    self.peer_done = true -- closes after the answer being made, if any
    if not self.busy then
      self.busy = true
      self:answer(413, {error = "request too large"}, false)
    end
    return
  end
  self:pump()
end

--- Listens on host:port (port 0: one the kernel picks). Returns the server:
--- {port =, requests = count, clients = set, close = fn}.
function http.serve(opts)
  local server = {
    handler = assert(opts.handler, "http.serve: handler"),
    on_error = opts.on_error or function(err) io.stderr:write("http: ", tostring(err), "\n") end,
    requests = 0, clients = {},
  }
  local listener = uv.new_tcp()
  assert(listener:bind(opts.host or "127.0.0.1", opts.port or 8080))
  assert(listener:listen(128, function(err)
    if err then return server.on_error("http: accept: " .. err, nil) end
    local tcp = uv.new_tcp()
    if not listener:accept(tcp) then return tcp:close() end
    tcp:nodelay(true)
    local client = setmetatable({server = server, tcp = tcp, buf = ""}, Client)
    server.clients[client] = true
    tcp:read_start(function(read_err, data) client:on_read(read_err, data) end)
  end))
  server.port = listener:getsockname().port
  function server.close()
    if listener:is_closing() then return end
    listener:close()
    for client in pairs(server.clients) do client:close() end
  end
  return server
end

return http

-- The interactive REPL. Without a terminal, stdin is run as one script.
local M = {}

local function env()
  local e = require("gradspec.runner").spec_env()
  e.gs.assert = e.assert
  return e
end

local function show(...)
  local n = select("#", ...)
  if n == 0 then return end
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  print(table.concat(parts, "\t"))
end

-- Compiles a line as an expression first (so `x` prints x), then as a statement.
local function compile(src)
  local chunk = loadstring("return " .. src, "=stdin")
  if chunk then return chunk end
  return loadstring(src, "=stdin")
end

local function incomplete(err)
  return err and err:find("<eof>", 1, true) ~= nil
end

function M.main()
  local C = require("gradspec.ffi").C
  local e = env()
  if C.gs_isatty(0) == 0 then
    local src = io.read("*a")
    local chunk, err = loadstring(src, "=stdin")
    if not chunk then
      io.stderr:write("gradspec: ", err, "\n")
      return 1
    end
    setfenv(chunk, e)
    local ok, rerr = xpcall(chunk, function(x) return debug.traceback(tostring(x), 2) end)
    if not ok then io.stderr:write("gradspec: ", tostring(rerr), "\n") return 1 end
    return 0
  end
  print("gradspec " .. e.gs.version .. " (Lua REPL; the workbench is `gs`; Ctrl-D quits)")
  local buffer = ""
  while true do
    io.write(buffer == "" and "> " or ">> ")
    io.flush()
    local line = io.read("*l")
    if not line then print() break end
    buffer = buffer == "" and line or (buffer .. "\n" .. line)
    local chunk, err = compile(buffer)
    if not chunk and incomplete(err) then
      -- keep reading: the statement continues on the next line
    else
      buffer = ""
      if not chunk then
        print(err)
      else
        setfenv(chunk, e)
        local res = { xpcall(chunk, function(x) return debug.traceback(tostring(x), 2) end) }
        if res[1] then show(unpack(res, 2, table.maxn(res))) else print(res[2]) end
      end
    end
  end
  return 0
end

return M

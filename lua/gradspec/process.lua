-- Running shell commands from specs and tools: output and exit status.
local gffi = require("gradspec.ffi")

local M = {}

function M.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The running gradspec executable, for specs that drive it as a user would.
function M.self_exe() return gffi.ffi.string(gffi.C.gs_self_exe()) end

-- Runs a shell command line; returns its stdout and stderr together, and the
-- exit status (128 + n when killed by signal n, as the shell reports it).
function M.run(cmd)
  local pipe = io.popen("( " .. cmd .. " ) 2>&1; echo \"__gradspec_exit=$?\"")
  local out = pipe:read("*a")
  pipe:close()
  local body, code = out:match("^(.*)__gradspec_exit=(%d+)%s*$")
  return body or out, tonumber(code) or -1
end

-- Runs gradspec itself with the given arguments (each one quoted).
function M.gradspec(args)
  local parts = { M.quote(M.self_exe()) }
  for _, a in ipairs(args) do parts[#parts + 1] = M.quote(a) end
  return M.run(table.concat(parts, " "))
end

return M

-- One-line serialisation of flat records (strings, numbers, booleans and
-- lists of strings), used to pass results from a child process to the runner.
local M = {}

local function value(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if t == "number" then
    if v ~= v then return "0/0" end
    if v == math.huge then return "1/0" end
    if v == -math.huge then return "-1/0" end
    return string.format("%.17g", v)
  end
  if t == "boolean" then return tostring(v) end
  if t == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = value(x) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "nil"
end

function M.encode(rec)
  local keys = {}
  for k in pairs(rec) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = string.format("[%q]=%s", k, value(rec[k])) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- Returns the record, or nil for a line that is not one (a partial write).
function M.decode(line)
  local chunk = loadstring("return " .. line)
  if not chunk then return nil end
  setfenv(chunk, {})
  local ok, rec = pcall(chunk)
  if ok and type(rec) == "table" then return rec end
  return nil
end

return M

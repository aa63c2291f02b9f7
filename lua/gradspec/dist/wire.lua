-- What a rank process returns to gs.dist.run: nil, booleans, numbers,
-- strings, tables (keys and values of these kinds, no cycles) and tensors
-- (sent as host bytes, received on the host), written to a byte string and
-- read back exactly (numbers as their 8 bytes, NaN and -0 included).
local T = require("gradspec.tensor")
local ffi = require("gradspec.ffi").ffi

local M = {}

local num = ffi.new("double[1]")

local function put_number(out, x)
  num[0] = x
  out[#out + 1] = "n" .. ffi.string(num, 8)
end

local function put_string(out, tag, s)
  out[#out + 1] = tag .. #s .. ":" .. s
end

local function put(out, v, seen, hooks)
  local kind = type(v)
  if v == nil then out[#out + 1] = "z"
  elseif kind == "boolean" then out[#out + 1] = v and "B" or "b"
  elseif kind == "number" then put_number(out, v)
  elseif kind == "string" then put_string(out, "s", v)
  elseif T.is_tensor(v) then
    local h = v:to("cpu"):contiguous()
    put_string(out, "T", h.dtype)
    local shape = h:shape()
    put_number(out, #shape)
    for _, d in ipairs(shape) do put_number(out, d) end
    put_string(out, "s", ffi.string(h:data(), h:numel() * h._dt.size))
    put(out, hooks.tensor_out and hooks.tensor_out(v) or nil, seen, hooks)
  elseif kind == "table" then
    if seen[v] then error("a returned table refers to itself: only trees can be returned", 0) end
    seen[v] = true
    out[#out + 1] = "t"
    for k, x in pairs(v) do
      put(out, k, seen, hooks)
      put(out, x, seen, hooks)
    end
    out[#out + 1] = "e"
    seen[v] = nil
  else
    error(string.format("a rank returned a %s: only nil, booleans, numbers, strings, tables and tensors come back", kind), 0)
  end
end

-- hooks.tensor_out(t): a value sent along with tensor t, handed to
-- hooks.tensor_in(t, value) of decode on the other side.
function M.encode(v, hooks)
  local out = {}
  put(out, v, {}, hooks or {})
  return table.concat(out)
end

local function reader(s)
  local pos = 1
  local r = {}
  function r.byte()
    local c = s:sub(pos, pos)
    pos = pos + 1
    return c
  end
  function r.number()
    ffi.copy(num, s:sub(pos, pos + 7), 8)
    pos = pos + 8
    return num[0]
  end
  function r.string()
    local colon = s:find(":", pos, true)
    local len = tonumber(s:sub(pos, colon - 1))
    local v = s:sub(colon + 1, colon + len)
    pos = colon + 1 + len
    return v
  end
  return r
end

local END = {}

local function get(r, hooks)
  local tag = r.byte()
  if tag == "z" then return nil
  elseif tag == "B" then return true
  elseif tag == "b" then return false
  elseif tag == "n" then return r.number()
  elseif tag == "s" then return r.string()
  elseif tag == "e" then return END
  elseif tag == "T" then
    local dtype = r.string()
    assert(r.byte() == "n")
    local dims = r.number()
    local shape = {}
    for i = 1, dims do
      assert(r.byte() == "n")
      shape[i] = r.number()
    end
    assert(r.byte() == "s")
    local bytes = r.string()
    local t = T.empty(shape, { dtype = dtype })
    if #bytes > 0 then ffi.copy(t:data(), bytes, #bytes) end
    local extra = get(r, hooks)
    if extra ~= nil and hooks.tensor_in then hooks.tensor_in(t, extra) end
    return t
  elseif tag == "t" then
    local t = {}
    while true do
      local k = get(r, hooks)
      if k == END then return t end
      t[k] = get(r, hooks)
    end
  end
  error("gs.dist: a rank's result is damaged (tag " .. string.format("%q", tag) .. ")", 0)
end

function M.decode(s, hooks) return get(reader(s), hooks or {}) end

return M

-- dtype names, their C enum values and element types.
local ffi = require("ffi")

local M = {}

local list = {
  { name = "f64", code = 0, size = 8, ctype = "double", float = true },
  { name = "f32", code = 1, size = 4, ctype = "float", float = true },
  { name = "bf16", code = 2, size = 2, ctype = "uint16_t", float = true, half = true },
  { name = "f16", code = 3, size = 2, ctype = "uint16_t", float = true, half = true },
  { name = "i32", code = 4, size = 4, ctype = "int32_t", int = true },
  { name = "i64", code = 5, size = 8, ctype = "int64_t", int = true },
}

local aliases = {
  float64 = "f64", double = "f64", float32 = "f32", float = "f32", bfloat16 = "bf16",
  float16 = "f16", half = "f16", int32 = "i32", int64 = "i64", long = "i64",
}

M.by_name, M.by_code = {}, {}
for _, d in ipairs(list) do
  d.ptr = ffi.typeof(d.ctype .. " *")
  M.by_name[d.name] = d
  M.by_code[d.code] = d
end

-- Returns the dtype record for a name (or alias), or nil.
function M.lookup(name)
  if type(name) ~= "string" then return nil end
  return M.by_name[aliases[name] or name]
end

-- Like lookup, but raises an error that names the argument.
function M.get(name, argname)
  local d = M.lookup(name)
  if not d then
    local names = {}
    for _, x in ipairs(list) do names[#names + 1] = x.name end
    error(string.format("%s: unknown dtype %s (expected one of %s)", argname or "dtype",
      tostring(name), table.concat(names, ", ")), 3)
  end
  return d
end

M.names, M.float_names = {}, {}
for _, d in ipairs(list) do
  M.names[#M.names + 1] = d.name
  if d.float then M.float_names[#M.float_names + 1] = d.name end
end

-- The float dtype a name (or alias) stands for, or nil and why not: a
-- gradient or an output of a loss can only be a float dtype.
function M.float(name)
  if type(name) ~= "string" then
    return nil, string.format("is a %s, expected a float dtype name (%s)", type(name), table.concat(M.float_names, ", "))
  end
  local d = M.lookup(name)
  if not d then
    local names = {}
    for alias, target in pairs(aliases) do
      if M.by_name[target].float then names[#names + 1] = alias end
    end
    table.sort(names)
    return nil, string.format("is unknown (known float dtypes: %s; also %s)", table.concat(M.float_names, ", "),
      table.concat(names, ", "))
  end
  if not d.float then
    return nil, string.format("is not a float dtype (%s)", table.concat(M.float_names, ", "))
  end
  return d
end

return M

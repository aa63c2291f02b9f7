-- A strict JSON reader and a validator for the part of JSON Schema (2020-12)
-- that specs/fixtures/json/run.schema.json uses, so that specs can check
-- gradspec's JSON output with nothing installed beyond gradspec.
--
-- decode(text) returns the value (objects and arrays are tables; null is
-- M.null; an array is marked so that [] and {} stay apart), or nil and a
-- message with the byte offset. validate(value, schema) returns a list of
-- errors, each "path: what is wrong" (empty when the value is valid).
-- Keywords: type (a name or a list; "integer" is a number without a
-- fraction), enum, const, minimum, minLength, properties, required,
-- additionalProperties (false or a schema), items, $ref (to "#/$defs/..."),
-- $defs; the annotations $schema, $id, title, description and $comment are
-- ignored. Any other keyword is an error: a schema must not rely on one
-- this validator would skip.
local M = {}

M.null = setmetatable({}, { __tostring = function() return "null" end })
local ARRAY_MT = { __name = "json array" }
local OBJECT_MT = { __name = "json object" }

local function is_array(v) return getmetatable(v) == ARRAY_MT end
local function is_object(v) return getmetatable(v) == OBJECT_MT end

-- UTF-8 of a code point.
local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40) end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return string.char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
    0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

-- Whether s is valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then len = 3
    elseif c >= 0xF0 and c <= 0xF4 then len = 4
    else return false end
    if i + len - 1 > n then return false end
    for j = i + 1, i + len - 1 do
      local d = s:byte(j)
      if d < 0x80 or d > 0xBF then return false end
    end
    local d = s:byte(i + 1) or 0
    if (c == 0xE0 and d < 0xA0) or (c == 0xED and d > 0x9F) or (c == 0xF0 and d < 0x90) or (c == 0xF4 and d > 0x8F) then
      return false
    end
    i = i + len
  end
  return true
end

function M.decode(text)
  local pos = 1
  local function fail(msg) error({ json = string.format("%s at byte %d", msg, pos) }, 0) end
  local function skip_ws()
    pos = text:find("[^ \t\r\n]", pos) or #text + 1
  end
  local value

  local function string_value()
    pos = pos + 1 -- the opening quote
    local parts = {}
    while true do
      local c = text:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then
        pos = pos + 1
        break
      end
      if c:byte() < 0x20 then fail("control character in a string") end
      if c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        local simple = ({ ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" })[e]
        if simple then
          parts[#parts + 1] = simple
          pos = pos + 2
        elseif e == "u" then
          local hex = text:sub(pos + 2, pos + 5)
          if not hex:match("^%x%x%x%x$") then fail("bad \\u escape") end
          local cp = tonumber(hex, 16)
          pos = pos + 6
          if cp >= 0xD800 and cp <= 0xDBFF then
            local lo = text:match("^\\u(%x%x%x%x)", pos)
            local lcp = lo and tonumber(lo, 16)
            if not lcp or lcp < 0xDC00 or lcp > 0xDFFF then fail("a high surrogate without its low half") end
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lcp - 0xDC00)
            pos = pos + 6
          elseif cp >= 0xDC00 and cp <= 0xDFFF then
            fail("a lone low surrogate")
          end
          parts[#parts + 1] = utf8_char(cp)
        else
          fail("bad escape \\" .. e)
        end
      else
        local run_end = text:find('["\\%z\1-\31]', pos) or #text + 1
        parts[#parts + 1] = text:sub(pos, run_end - 1)
        pos = run_end
      end
    end
    local s = table.concat(parts)
    if not valid_utf8(s) then fail("a string that is not valid UTF-8") end
    return s
  end

  function value()
    skip_ws()
    local c = text:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local obj = setmetatable({}, OBJECT_MT)
      skip_ws()
      if text:sub(pos, pos) == "}" then
        pos = pos + 1
        return obj
      end
      while true do
        skip_ws()
        if text:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = string_value()
        if rawget(obj, k) ~= nil then fail("duplicate key " .. k) end
        skip_ws()
        if text:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        obj[k] = value()
        skip_ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return obj end
        if d ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      pos = pos + 1
      local arr = setmetatable({}, ARRAY_MT)
      skip_ws()
      if text:sub(pos, pos) == "]" then
        pos = pos + 1
        return arr
      end
      while true do
        arr[#arr + 1] = value()
        skip_ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return arr end
        if d ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return string_value()
    elseif text:sub(pos, pos + 3) == "true" then
      pos = pos + 4
      return true
    elseif text:sub(pos, pos + 4) == "false" then
      pos = pos + 5
      return false
    elseif text:sub(pos, pos + 3) == "null" then
      pos = pos + 4
      return M.null
    elseif c == "-" or c:match("%d") then
      -- -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
      local start = pos
      if c == "-" then pos = pos + 1 end
      if text:sub(pos, pos) == "0" then
        pos = pos + 1
      elseif text:match("^[1-9]", pos) then
        pos = text:find("[^%d]", pos) or #text + 1
      else
        fail("a '-' without digits")
      end
      if text:sub(pos, pos) == "." then
        if not text:match("^%d", pos + 1) then fail("a number with no digits after '.'") end
        pos = text:find("[^%d]", pos + 1) or #text + 1
      end
      if text:match("^[eE]", pos) then
        pos = pos + 1
        if text:match("^[%+%-]", pos) then pos = pos + 1 end
        if not text:match("^%d", pos) then fail("an exponent without digits") end
        pos = text:find("[^%d]", pos) or #text + 1
      end
      return tonumber(text:sub(start, pos - 1))
    else
      fail("unexpected " .. (c == "" and "end of text" or ("'" .. c .. "'")))
    end
  end

  local ok, result = pcall(function()
    local v = value()
    skip_ws()
    if pos <= #text then fail("text after the document") end
    return v
  end)
  if ok then return result end
  if type(result) == "table" and result.json then return nil, result.json end
  error(result, 0)
end

local function type_of(v)
  if v == M.null then return "null" end
  local t = type(v)
  if t == "boolean" or t == "string" then return t end
  if t == "number" then return "number" end
  if is_array(v) then return "array" end
  if is_object(v) then return "object" end
  return t
end

local function has_type(v, name)
  local t = type_of(v)
  if name == "integer" then return t == "number" and v == math.floor(v) and v == v end
  return t == name
end

local function equal(a, b)
  if type_of(a) ~= type_of(b) then return false end
  if type(a) ~= "table" or a == M.null then return a == b end
  for k, x in pairs(a) do
    if not equal(x, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local IGNORED = { ["$schema"] = true, ["$id"] = true, title = true, description = true, ["$comment"] = true,
  ["$defs"] = true }
local KNOWN = { type = true, enum = true, const = true, minimum = true, minLength = true, properties = true,
  required = true, additionalProperties = true, items = true, ["$ref"] = true }

local function show(v)
  local t = type_of(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" or t == "boolean" or t == "null" then return tostring(v) end
  return t
end

function M.validate(value, schema)
  local errors = {}
  local root = schema
  local function check(v, s, path)
    for k in pairs(s) do
      if not KNOWN[k] and not IGNORED[k] then
        errors[#errors + 1] = path .. ": the schema uses the keyword " .. k .. ", which this validator does not implement"
      end
    end
    if s["$ref"] then
      local name = s["$ref"]:match("^#/%$defs/([%w_]+)$")
      local target = name and root["$defs"] and root["$defs"][name]
      if not target then
        errors[#errors + 1] = path .. ": cannot resolve $ref " .. tostring(s["$ref"])
        return
      end
      check(v, target, path)
    end
    if s.type then
      local types = type(s.type) == "table" and s.type or { s.type }
      local ok = false
      for _, name in ipairs(types) do
        if has_type(v, name) then ok = true end
      end
      if not ok then
        local names = {}
        for i, name in ipairs(types) do names[i] = name end
        errors[#errors + 1] = string.format("%s: %s is not of type %s", path, show(v), table.concat(names, " or "))
        return
      end
    end
    if s.const ~= nil and not equal(v, s.const) then
      errors[#errors + 1] = string.format("%s: %s is not %s", path, show(v), show(s.const))
    end
    if s.enum then
      local ok = false
      for _, x in ipairs(s.enum) do
        if equal(v, x) then ok = true end
      end
      if not ok then
        local names = {}
        for i, x in ipairs(s.enum) do names[i] = show(x) end
        errors[#errors + 1] = string.format("%s: %s is not one of %s", path, show(v), table.concat(names, ", "))
      end
    end
    local t = type_of(v)
    if t == "number" and s.minimum and v < s.minimum then
      errors[#errors + 1] = string.format("%s: %s is below the minimum %s", path, show(v), tostring(s.minimum))
    end
    if t == "string" and s.minLength then
      -- characters, not bytes: count the bytes that do not continue a sequence
      local _, chars = v:gsub("[^\128-\191]", "")
      if chars < s.minLength then
        errors[#errors + 1] = string.format("%s: %s is shorter than %d", path, show(v), s.minLength)
      end
    end
    if t == "object" then
      for _, k in ipairs(s.required or {}) do
        if v[k] == nil then errors[#errors + 1] = path .. ": missing the required property " .. k end
      end
      local props = s.properties or {}
      for k, x in pairs(v) do
        local sub = props[k]
        if sub then
          check(x, sub, path .. "." .. k)
        elseif s.additionalProperties == false then
          errors[#errors + 1] = path .. ": property " .. k .. " is not allowed"
        elseif type(s.additionalProperties) == "table" then
          check(x, s.additionalProperties, path .. "." .. k)
        end
      end
    end
    if t == "array" and s.items then
      for i, x in ipairs(v) do check(x, s.items, string.format("%s[%d]", path, i - 1)) end
    end
  end
  check(value, schema, "$")
  return errors
end

-- Reads and decodes a JSON file; errors name the file.
function M.read(path)
  local f = assert(io.open(path, "r"))
  local text = f:read("*a")
  f:close()
  local v, err = M.decode(text)
  if v == nil then error(path .. ": " .. err, 2) end
  return v
end

M.is_array, M.is_object = is_array, is_object

return M

-- JSON (RFC 8259): the one decoder and the one encoder of gradspec. The
-- safetensors header (gradspec.io), the JSON run report (gradspec.report)
-- and the specs that check that report all go through here.
--
-- decode(text) returns the value, or nil and "what is wrong at byte N",
-- N the 1-based position in text of the byte where the problem starts
-- (#text + 1 when the text ends too soon). It is strict: no trailing
-- commas, no leading zeros, no unescaped control characters, no comments,
-- nothing after the document, strings that are valid UTF-8 (raw and after
-- \u escapes: surrogates only in high-low pairs), numbers that fit a
-- double. A key that occurs twice in one object is an error (one name with
-- two meanings is refused rather than one value silently winning).
-- Objects and arrays are tables marked as such (is_object, is_array), so
-- that {} and [] stay apart; keys(obj) lists an object's keys in document
-- order; null is M.null; numbers are Lua numbers (integers beyond 2^53 are
-- rounded, as in every double-based reader).
--
-- encode(v, indent) writes compact JSON, or one item a line indented by
-- the string indent. nil and M.null are null; NaN and infinities are null
-- (JSON has no such numbers); strings are cleaned to UTF-8 (utf8_clean);
-- a table is an array when marked (array(t), or decoded from one) or when
-- it has a [1], else an object whose keys are those given to object(keys,
-- fields) in that order (a nil field is written as null), or decoded
-- order, or else sorted.
local M = {}

M.null = setmetatable({}, { __tostring = function() return "null" end })
local ARRAY_MT = { __name = "json array" }
local OBJECT_MT = { __name = "json object" }
-- Key order of objects, beside them so that no key name is reserved.
local ORDER = setmetatable({}, { __mode = "k" })

-- Deeper documents are refused before Lua's stack is.
M.max_depth = 512

function M.is_array(v) return getmetatable(v) == ARRAY_MT end
function M.is_object(v) return getmetatable(v) == OBJECT_MT end

-- t (or a new table) marked as an array, so that an empty one is [].
function M.array(t) return setmetatable(t or {}, ARRAY_MT) end

-- fields marked as an object whose keys are written in the order of keys.
function M.object(keys, fields)
  fields = setmetatable(fields or {}, OBJECT_MT)
  ORDER[fields] = keys
  return fields
end

-- An object's keys in document order (or object()'s order), else nil.
function M.keys(obj)
  local keys = ORDER[obj]
  return keys and { unpack(keys) } or nil
end

-- UTF-8 ------------------------------------------------------------------------

-- The length of the valid UTF-8 sequence at byte i of s, or nil (RFC 3629:
-- no overlong forms, no surrogates, nothing above U+10FFFF).
local function utf8_length(s, i)
  local c = s:byte(i)
  if c < 0x80 then return 1 end
  local len
  if c >= 0xC2 and c <= 0xDF then len = 2
  elseif c >= 0xE0 and c <= 0xEF then len = 3
  elseif c >= 0xF0 and c <= 0xF4 then len = 4
  else return nil end
  -- the second byte's range is narrower after these four lead bytes
  local lo, hi = 0x80, 0xBF
  if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F elseif c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
  local d = s:byte(i + 1)
  if not d or d < lo or d > hi then return nil end
  for j = i + 2, i + len - 1 do
    local e = s:byte(j)
    if not e or e < 0x80 or e > 0xBF then return nil end
  end
  return len
end

-- The byte position of the first byte of s that is not valid UTF-8, or nil.
function M.utf8_invalid_at(s)
  local i = s:find("[\128-\255]")
  while i do
    local len = utf8_length(s, i)
    if not len then return i end
    i = s:find("[\128-\255]", i + len)
  end
  return nil
end

-- s with every byte that does not start or continue a valid sequence
-- replaced by U+FFFD.
function M.utf8_clean(s)
  if not s:find("[\128-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local j = s:find("[\128-\255]", i) or n + 1
    if j > i then out[#out + 1] = s:sub(i, j - 1) end
    if j > n then break end
    local len = utf8_length(s, j)
    if len then
      out[#out + 1] = s:sub(j, j + len - 1)
      i = j + len
    else
      out[#out + 1] = "\239\191\189"
      i = j + 1
    end
  end
  return table.concat(out)
end

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40) end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return string.char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
    0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

-- decode -----------------------------------------------------------------------

local DECODE_ERROR = {}
local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

-- The byte at i as an error message shows it.
local function shown(text, i)
  local b = text:byte(i)
  if not b then return "the end of the text" end
  if b >= 0x21 and b < 0x7F then return "'" .. string.char(b) .. "'" end
  return string.format("byte 0x%02X", b)
end

function M.decode(text)
  if type(text) ~= "string" then
    error("json.decode: text must be a string, got " .. type(text), 2)
  end
  local pos = 1
  local function fail(at, fmt, ...)
    error(setmetatable({ msg = string.format(fmt, ...) .. " at byte " .. at }, DECODE_ERROR), 0)
  end
  local function skip_ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end

  -- \uXXXX at pos (the backslash); a high surrogate must be followed by its
  -- low half.
  local function unicode_escape()
    local start = pos
    local hex = text:match("^%x%x%x%x", pos + 2)
    if not hex then fail(start, "\\u needs four hex digits") end
    local cp = tonumber(hex, 16)
    pos = pos + 6
    if cp >= 0xD800 and cp <= 0xDBFF then
      local lo_hex = text:match("^\\u(%x%x%x%x)", pos)
      local lo = lo_hex and tonumber(lo_hex, 16)
      if not lo or lo < 0xDC00 or lo > 0xDFFF then
        fail(start, "high surrogate \\u%s without a low surrogate after it", hex)
      end
      cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
      pos = pos + 6
    elseif cp >= 0xDC00 and cp <= 0xDFFF then
      fail(start, "low surrogate \\u%s without a high surrogate before it", hex)
    end
    return utf8_char(cp)
  end

  local function string_value()
    pos = pos + 1 -- the opening quote
    local parts = {}
    while true do
      local stop = text:find('["\\%z\1-\31\128-\255]', pos)
      if not stop then fail(#text + 1, "unterminated string") end
      if stop > pos then parts[#parts + 1] = text:sub(pos, stop - 1) end
      pos = stop
      local b = text:byte(pos)
      if b == 34 then -- '"'
        pos = pos + 1
        return table.concat(parts)
      elseif b == 92 then -- '\'
        local e = text:sub(pos + 1, pos + 1)
        if e == "u" then
          parts[#parts + 1] = unicode_escape()
        elseif ESCAPES[e] then
          parts[#parts + 1] = ESCAPES[e]
          pos = pos + 2
        elseif e == "" then
          fail(#text + 1, "unterminated string")
        else
          fail(pos, "bad escape: a backslash before %s", shown(text, pos + 1))
        end
      elseif b < 0x20 then
        fail(pos, "unescaped control character 0x%02X in a string", b)
      else
        local len = utf8_length(text, pos)
        if not len then fail(pos, "invalid UTF-8 (byte 0x%02X) in a string", b) end
        parts[#parts + 1] = text:sub(pos, pos + len - 1)
        pos = pos + len
      end
    end
  end

  -- -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  local function number_value()
    local start = pos
    if text:byte(pos) == 45 then pos = pos + 1 end -- '-'
    if text:match("^0", pos) then
      pos = pos + 1
      if text:match("^%d", pos) then fail(start, "number with a leading zero") end
    elseif text:match("^[1-9]", pos) then
      pos = text:find("[^%d]", pos) or #text + 1
    else
      fail(pos, "expected a digit after '-', got %s", shown(text, pos))
    end
    if text:byte(pos) == 46 then -- '.'
      if not text:match("^%d", pos + 1) then fail(pos + 1, "expected a digit after the decimal point, got %s", shown(text, pos + 1)) end
      pos = text:find("[^%d]", pos + 1) or #text + 1
    end
    if text:match("^[eE]", pos) then
      pos = pos + 1
      if text:match("^[%+%-]", pos) then pos = pos + 1 end
      if not text:match("^%d", pos) then fail(pos, "expected a digit in the exponent, got %s", shown(text, pos)) end
      pos = text:find("[^%d]", pos) or #text + 1
    end
    local n = tonumber(text:sub(start, pos - 1))
    if n == math.huge or n == -math.huge then fail(start, "number %s is out of the range of a double", text:sub(start, pos - 1)) end
    return n
  end

  local value
  local function object_value(depth)
    pos = pos + 1
    local obj, keys = setmetatable({}, OBJECT_MT), {}
    ORDER[obj] = keys
    skip_ws()
    if text:byte(pos) == 125 then pos = pos + 1; return obj end -- '}'
    while true do
      skip_ws()
      local b = text:byte(pos)
      if b ~= 34 then
        if b == 125 then fail(pos, "trailing comma before '}'") end
        fail(pos, "expected a string key, got %s", shown(text, pos))
      end
      local key_at = pos
      local k = string_value()
      if obj[k] ~= nil then fail(key_at, "duplicate key \"%s\"", k) end
      keys[#keys + 1] = k
      skip_ws()
      if text:byte(pos) ~= 58 then fail(pos, "expected ':' after the key, got %s", shown(text, pos)) end
      pos = pos + 1
      obj[k] = value(depth + 1)
      skip_ws()
      b = text:byte(pos)
      if b == 125 then pos = pos + 1; return obj end
      if b ~= 44 then fail(pos, "expected ',' or '}', got %s", shown(text, pos)) end
      pos = pos + 1
    end
  end

  local function array_value(depth)
    pos = pos + 1
    local arr = setmetatable({}, ARRAY_MT)
    skip_ws()
    if text:byte(pos) == 93 then pos = pos + 1; return arr end -- ']'
    while true do
      skip_ws()
      if text:byte(pos) == 93 then fail(pos, "trailing comma before ']'") end
      arr[#arr + 1] = value(depth + 1)
      skip_ws()
      local b = text:byte(pos)
      if b == 93 then pos = pos + 1; return arr end
      if b ~= 44 then fail(pos, "expected ',' or ']', got %s", shown(text, pos)) end
      pos = pos + 1
    end
  end

  local LITERALS = { ["true"] = true, ["false"] = false, null = M.null }
  function value(depth)
    if depth > M.max_depth then fail(pos, "nesting deeper than %d levels", M.max_depth) end
    skip_ws()
    local c = text:sub(pos, pos)
    if c == "{" then return object_value(depth) end
    if c == "[" then return array_value(depth) end
    if c == '"' then return string_value() end
    if c == "-" or c:match("^%d$") then return number_value() end
    local word = text:match("^%a+", pos)
    if word then
      if LITERALS[word] == nil then fail(pos, "unknown word '%s' (JSON's words are true, false and null)", word) end
      pos = pos + #word
      return LITERALS[word]
    end
    fail(pos, "expected a value, got %s", shown(text, pos))
  end

  local ok, result = pcall(function()
    local v = value(1)
    skip_ws()
    if pos <= #text then fail(pos, "text after the document: %s", shown(text, pos)) end
    return v
  end)
  if ok then return result end
  if getmetatable(result) == DECODE_ERROR then return nil, result.msg end
  error(result, 0)
end

-- encode -----------------------------------------------------------------------

local STRING_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t" }

function M.encode_string(s)
  s = M.utf8_clean(tostring(s))
  return '"' .. s:gsub('[%z\1-\31"\\]', function(c)
    return STRING_ESCAPES[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode(v, indent, depth)
  local t = type(v)
  if v == nil or v == M.null then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if t == "string" then return M.encode_string(v) end
  if t ~= "table" then return M.encode_string(tostring(v)) end
  if depth >= M.max_depth then error(string.format("json.encode: nesting deeper than %d levels (a cycle?)", M.max_depth), 0) end
  local pad = indent and ("\n" .. string.rep(indent, depth + 1)) or ""
  local close = indent and ("\n" .. string.rep(indent, depth)) or ""
  local sep = indent and ": " or ":"
  if getmetatable(v) == ARRAY_MT or v[1] ~= nil then
    if #v == 0 then return "[]" end
    local parts = {}
    for i = 1, #v do parts[i] = pad .. encode(v[i], indent, depth + 1) end
    return "[" .. table.concat(parts, ",") .. close .. "]"
  end
  local keys = ORDER[v]
  if not keys then
    keys = {}
    for k in pairs(v) do
      if type(k) ~= "string" then
        error(string.format("json.encode: object keys must be strings, got the %s key %s", type(k), tostring(k)), 0)
      end
      keys[#keys + 1] = k
    end
    table.sort(keys)
  end
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = pad .. M.encode_string(k) .. sep .. encode(v[k], indent, depth + 1) end
  if #parts == 0 then return "{}" end
  return "{" .. table.concat(parts, ",") .. close .. "}"
end

function M.encode(v, indent)
  if indent ~= nil and type(indent) ~= "string" then
    error("json.encode: indent must be a string, got " .. type(indent), 2)
  end
  return encode(v, indent, 0)
end

return M

-- Tensors to and from files: NumPy's .npy and the safetensors format.
--
-- Bytes move between the file and tensor storage with ffi.copy; values are
-- never converted, so NaN payloads and bf16 bit patterns survive a round trip.
-- Every error names the function, the file and what is wrong with it.
--
-- .npy (format versions 1, 2 and 3):
--   descr '<f8' '<f4' '<f2' '<i4' '<i8' load as f64 f32 f16 i32 i64; '>' (big
--   endian) is byte-swapped on load; '=' and '|' are taken as native (little).
--   bf16 has no NumPy type code. ml_dtypes' bfloat16 saved by np.save lands
--   as '<V2' (raw 2-byte void, the type is lost), so '<V2' and '|V2' load as
--   bf16 only when the caller says so: gs.load_npy(path, {dtype = "bf16"}).
--   The descr 'bfloat16' (what tools write when they store str(dtype), and
--   what np.load understands once ml_dtypes is imported) loads as bf16.
--   fortran_order True: 2-D data is transposed into row-major storage.
--   Shapes of more than 2 dims, structured and object dtypes are errors.
-- safetensors: an 8-byte little-endian header length, a JSON header
--   {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the
--   data. F64 F32 BF16 F16 I32 I64 are supported; the tensors' byte ranges
--   must tile the data section exactly, as the reference implementation
--   requires.
local gffi = require("gradspec.ffi")
local T = require("gradspec.tensor")
local dtypes = require("gradspec.dtype")
local json = require("gradspec.json")
local ffi = gffi.ffi

local M = {}

local function fail(fn, path, fmt, ...)
  error(string.format("%s: %s: " .. fmt, fn, tostring(path), ...), 0)
end

-- The whole file as a Lua string (strings are byte arrays; ffi.copy reads
-- from them without conversion).
local function read_file(fn, path)
  if type(path) ~= "string" then
    error(string.format("%s: path must be a string, got %s", fn, type(path)), 0)
  end
  local f, err = io.open(path, "rb")
  if not f then fail(fn, path, "cannot open: %s", tostring(err)) end
  local bytes = f:read("*a")
  f:close()
  return bytes or ""
end

local function write_file(fn, path, parts)
  if type(path) ~= "string" then
    error(string.format("%s: path must be a string, got %s", fn, type(path)), 0)
  end
  local f, err = io.open(path, "wb")
  if not f then fail(fn, path, "cannot open for writing: %s", tostring(err)) end
  for _, p in ipairs(parts) do
    local ok, werr = f:write(p)
    if not ok then
      f:close()
      fail(fn, path, "write failed: %s", tostring(werr))
    end
  end
  f:close()
end

local function u16le(s, i) local a, b = s:byte(i, i + 1) return a + b * 256 end
local function u32le(s, i)
  local a, b, c, d = s:byte(i, i + 3)
  return a + b * 256 + c * 65536 + d * 16777216
end

local function le_bytes(x, n)
  local out = {}
  for i = 1, n do
    out[i] = string.char(x % 256)
    x = math.floor(x / 256)
  end
  return table.concat(out)
end

-- Swaps the bytes of every element in place (big-endian files).
local function byteswap(ptr, count, size)
  local p = ffi.cast("uint8_t *", ptr)
  for e = 0, count - 1 do
    local base = e * size
    for k = 0, size / 2 - 1 do
      local a, b = base + k, base + size - 1 - k
      p[a], p[b] = p[b], p[a]
    end
  end
end

local function numel(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return n
end

local function shape_string(shape)
  return "(" .. table.concat(shape, ", ") .. ")"
end

-- A host tensor of the given shape filled from bytes[offset + 1 ...].
local function tensor_from_bytes(shape, dt, bytes, offset)
  local t = T.empty(shape, { dtype = dt.name })
  local n = numel(shape) * dt.size
  if n > 0 then ffi.copy(t:data(), ffi.cast("const char *", bytes) + offset, n) end
  return t
end

-- The raw bytes of a tensor in row-major order (a host, contiguous copy
-- first when needed).
local function tensor_bytes(t)
  local h = t:to("cpu"):contiguous()
  local n = h:numel() * dtypes.by_name[h.dtype].size
  if n == 0 then return "" end
  return ffi.string(h:data(), n)
end

-- .npy ------------------------------------------------------------------------

local NPY_MAGIC = "\147NUMPY"

-- The header is a Python dict literal: {'descr': '<f4', 'fortran_order':
-- False, 'shape': (2, 3), }. This reads exactly that subset of Python.
local function parse_py_literal(s, fn, path)
  local pos = 1
  local function bad(what)
    fail(fn, path, "malformed header: %s at byte %d of %q", what, pos, s)
  end
  local function skip() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function sequence(close)
    local items = {}
    pos = pos + 1
    skip()
    while s:sub(pos, pos) ~= close do
      items[#items + 1] = value()
      skip()
      local c = s:sub(pos, pos)
      if c == "," then pos = pos + 1; skip()
      elseif c ~= close then bad("expected ',' or '" .. close .. "'") end
    end
    pos = pos + 1
    return items
  end
  function value()
    skip()
    local c = s:sub(pos, pos)
    if c == "'" or c == '"' then
      local close = s:find(c, pos + 1, true)
      if not close then bad("unterminated string") end
      local str = s:sub(pos + 1, close - 1)
      pos = close + 1
      return str
    elseif c == "{" then
      local d = {}
      pos = pos + 1
      skip()
      while s:sub(pos, pos) ~= "}" do
        local k = value()
        if type(k) ~= "string" then bad("a key that is not a string") end
        skip()
        if s:sub(pos, pos) ~= ":" then bad("expected ':'") end
        pos = pos + 1
        d[k] = value()
        skip()
        local sep = s:sub(pos, pos)
        if sep == "," then pos = pos + 1; skip()
        elseif sep ~= "}" then bad("expected ',' or '}'") end
      end
      pos = pos + 1
      return d
    elseif c == "(" then
      return { tuple = sequence(")") }
    elseif c == "[" then
      return { list = sequence("]") }
    end
    local word = s:match("^[%w_%-%.]+", pos)
    if not word then bad("unexpected character " .. string.format("%q", c)) end
    pos = pos + #word
    if word == "True" then return true end
    if word == "False" then return false end
    local n = tonumber((word:gsub("[lL]$", ""))) -- Python 2 wrote long ints as 3L
    if n == nil then bad("unknown word " .. word) end
    return n
  end
  local v = value()
  skip()
  if pos <= #s then bad("trailing text") end
  return v
end

local npy_codes = { f8 = "f64", f4 = "f32", f2 = "f16", i4 = "i32", i8 = "i64" }
local npy_descr = { f64 = "<f8", f32 = "<f4", f16 = "<f2", i32 = "<i4", i64 = "<i8", bf16 = "bfloat16" }

-- Returns the dtype record and whether the data is big-endian.
local function npy_dtype(descr, want, fn, path)
  if type(descr) ~= "string" then
    fail(fn, path, "descr is a structured dtype (%s); only plain numeric arrays are supported",
      type(descr) == "table" and "a list of fields" or tostring(descr))
  end
  if descr == "bfloat16" then return dtypes.by_name.bf16, false end
  local order, code = descr:match("^([<>=|]?)(%a%d+)$")
  if not code then fail(fn, path, "unsupported descr '%s'", descr) end
  if code == "V2" then
    if want and want.name == "bf16" then return want, order == ">" end
    fail(fn, path, "descr '%s' is a raw 2-byte type (how np.save stores ml_dtypes bfloat16);"
      .. " pass {dtype = \"bf16\"} to read it as bf16", descr)
  end
  local name = npy_codes[code]
  if not name then
    fail(fn, path, "unsupported descr '%s' (supported: <f8 <f4 <f2 <i4 <i8, bfloat16, and <V2 with dtype = \"bf16\")", descr)
  end
  return dtypes.by_name[name], order == ">"
end

-- gs.load_npy(path, {dtype = name}): a 0-D, 1-D or 2-D host tensor. dtype is
-- needed to read '<V2' as bf16; for any other file it must match the file.
function M.load_npy(path, opts)
  local fn = "load_npy"
  opts = opts or {}
  local want = opts.dtype and dtypes.get(opts.dtype, fn .. ": dtype") or nil
  local bytes = read_file(fn, path)
  if #bytes < 10 or bytes:sub(1, 6) ~= NPY_MAGIC then
    fail(fn, path, "not a .npy file (the magic string \\x93NUMPY is missing)")
  end
  local major = bytes:byte(7)
  local header_len, start
  if major == 1 then
    header_len, start = u16le(bytes, 9), 11
  elseif major == 2 or major == 3 then
    if #bytes < 12 then fail(fn, path, "truncated: the header length is cut off") end
    header_len, start = u32le(bytes, 9), 13
  else
    fail(fn, path, "unsupported .npy format version %d.%d", major, bytes:byte(8))
  end
  if start - 1 + header_len > #bytes then
    fail(fn, path, "truncated: the header says it is %d bytes but the file has %d bytes after the prefix",
      header_len, #bytes - (start - 1))
  end
  local header = parse_py_literal(bytes:sub(start, start + header_len - 1), fn, path)
  if type(header) ~= "table" or header.tuple or header.list then
    fail(fn, path, "malformed header: not a dict")
  end
  for _, key in ipairs({ "descr", "fortran_order", "shape" }) do
    if header[key] == nil then fail(fn, path, "malformed header: no '%s' key", key) end
  end
  if type(header.shape) ~= "table" or not header.shape.tuple then
    fail(fn, path, "malformed header: shape is not a tuple")
  end
  local shape = header.shape.tuple
  for i, s in ipairs(shape) do
    if type(s) ~= "number" or s < 0 or s ~= math.floor(s) then
      fail(fn, path, "malformed header: shape[%d] = %s is not a non-negative integer", i - 1, tostring(s))
    end
  end
  if #shape > 2 then
    fail(fn, path, "shape %s has %d dims; gradspec tensors have at most 2", shape_string(shape), #shape)
  end
  local dt, big_endian = npy_dtype(header.descr, want, fn, path)
  if want and want ~= dt then
    fail(fn, path, "the file holds %s (descr '%s') but dtype = \"%s\" was asked for", dt.name, header.descr, want.name)
  end
  local offset = start - 1 + header_len
  local expected = numel(shape) * dt.size
  local have = #bytes - offset
  if have < expected then
    fail(fn, path, "truncated: shape %s of %s needs %d data bytes, the file has %d",
      shape_string(shape), dt.name, expected, have)
  elseif have > expected then
    fail(fn, path, "data length mismatch: shape %s of %s needs %d data bytes, the file has %d",
      shape_string(shape), dt.name, expected, have)
  end
  local t
  if header.fortran_order == true and #shape == 2 then
    -- Column-major data is the row-major transpose: read it so, then copy.
    local tr = tensor_from_bytes({ shape[2], shape[1] }, dt, bytes, offset)
    t = T.empty(shape, { dtype = dt.name })
    local size = dt.size
    local src, dst = ffi.cast("const uint8_t *", tr:data()), ffi.cast("uint8_t *", t:data())
    local rows, cols = shape[1], shape[2]
    for r = 0, rows - 1 do
      for c = 0, cols - 1 do ffi.copy(dst + (r * cols + c) * size, src + (c * rows + r) * size, size) end
    end
  elseif header.fortran_order ~= true and header.fortran_order ~= false then
    fail(fn, path, "malformed header: fortran_order is %s, not True or False", tostring(header.fortran_order))
  else
    t = tensor_from_bytes(shape, dt, bytes, offset)
  end
  if big_endian and dt.size > 1 then byteswap(t:data(), t:numel(), dt.size) end
  return t
end

-- gs.save_npy(path, t, {bf16_descr = "bfloat16" | "<V2"}): format 1.0, C
-- order, little-endian. bf16 is written with descr 'bfloat16' (np.load reads
-- it once ml_dtypes is imported), or '<V2' (what np.save itself writes for
-- ml_dtypes.bfloat16; np.load reads it anywhere as raw bytes).
function M.save_npy(path, t, opts)
  local fn = "save_npy"
  opts = opts or {}
  if not T.is_tensor(t) then error(string.format("%s: expected a tensor, got %s", fn, type(t)), 2) end
  local descr = npy_descr[t.dtype]
  if t.dtype == "bf16" and opts.bf16_descr then
    if opts.bf16_descr ~= "bfloat16" and opts.bf16_descr ~= "<V2" then
      error(string.format("%s: bf16_descr must be \"bfloat16\" or \"<V2\", got %s", fn, tostring(opts.bf16_descr)), 2)
    end
    descr = opts.bf16_descr
  end
  local shape = t:shape()
  local dims = {}
  for i, s in ipairs(shape) do dims[i] = tostring(s) end
  local shape_text = #dims == 1 and ("(" .. dims[1] .. ",)") or ("(" .. table.concat(dims, ", ") .. ")")
  local dict = string.format("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape_text)
  -- Pad with spaces so that the data starts on a 64-byte boundary, as NumPy does.
  local total = 10 + #dict + 1
  local pad = (64 - total % 64) % 64
  local header = dict .. string.rep(" ", pad) .. "\n"
  if #header > 65535 then error(fn .. ": header too long for format 1.0", 2) end
  write_file(fn, path, { NPY_MAGIC, "\1\0", le_bytes(#header, 2), header, tensor_bytes(t) })
end

-- safetensors ----------------------------------------------------------------

local st_to_gs = { F64 = "f64", F32 = "f32", BF16 = "bf16", F16 = "f16", I32 = "i32", I64 = "i64" }
local gs_to_st = {}
for k, v in pairs(st_to_gs) do gs_to_st[v] = k end

-- The reference implementation refuses headers above 100 MB.
local MAX_HEADER = 100 * 1000 * 1000

-- gs.load_safetensors(path) -> {name = tensor}, metadata (a string table).
function M.load_safetensors(path)
  local fn = "load_safetensors"
  local bytes = read_file(fn, path)
  if #bytes < 8 then
    fail(fn, path, "truncated: %d bytes, too short for the 8-byte header length", #bytes)
  end
  local n = u32le(bytes, 1) + u32le(bytes, 5) * 2 ^ 32
  if n > MAX_HEADER then fail(fn, path, "header length %.0f is over the 100 MB limit (not a safetensors file?)", n) end
  if 8 + n > #bytes then
    fail(fn, path, "truncated: the header length says %.0f bytes but only %d follow", n, #bytes - 8)
  end
  local text = bytes:sub(9, 8 + n)
  if text:sub(1, 1) ~= "{" then fail(fn, path, "the header does not start with '{' (not a safetensors file?)") end
  local header, jerr = json.decode(text)
  if header == nil then fail(fn, path, "malformed JSON header: %s", jerr) end
  local data_start = 8 + n
  local data_len = #bytes - data_start
  local out, metadata, spans = {}, {}, {}
  for _, name in ipairs(json.keys(header)) do
    local e = header[name]
    if name == "__metadata__" then
      if not json.is_object(e) then fail(fn, path, "__metadata__ is not an object") end
      for k, v in pairs(e) do
        if type(v) ~= "string" then fail(fn, path, "__metadata__[\"%s\"] is not a string", k) end
        metadata[k] = v
      end
    else
      if not json.is_object(e) then fail(fn, path, "tensor '%s': the entry is not an object", name) end
      if type(e.dtype) ~= "string" then fail(fn, path, "tensor '%s': no dtype", name) end
      local dname = st_to_gs[e.dtype]
      if not dname then
        fail(fn, path, "tensor '%s' has dtype %s, which gradspec does not support (F64, F32, BF16, F16, I32, I64)", name, e.dtype)
      end
      local dt = dtypes.by_name[dname]
      if not json.is_array(e.shape) then fail(fn, path, "tensor '%s': shape is not a list", name) end
      local shape = {}
      for i, s in ipairs(e.shape) do
        if type(s) ~= "number" or s < 0 or s ~= math.floor(s) then
          fail(fn, path, "tensor '%s': shape[%d] = %s is not a non-negative integer", name, i - 1, tostring(s))
        end
        shape[i] = s
      end
      if #shape > 2 then
        fail(fn, path, "tensor '%s' has shape [%s] with %d dims; gradspec tensors have at most 2", name,
          table.concat(shape, ", "), #shape)
      end
      local off = e.data_offsets
      if not json.is_array(off) or #off ~= 2 or type(off[1]) ~= "number" or type(off[2]) ~= "number"
        or off[1] < 0 or off[2] < off[1] then
        fail(fn, path, "tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end", name)
      end
      local need = numel(shape) * dt.size
      if off[2] - off[1] ~= need then
        fail(fn, path, "tensor '%s': data length mismatch: shape [%s] of %s needs %d bytes, data_offsets [%d, %d] span %d",
          name, table.concat(shape, ", "), e.dtype, need, off[1], off[2], off[2] - off[1])
      end
      if off[2] > data_len then
        fail(fn, path, "truncated: tensor '%s' ends at data byte %d but the data section has %d bytes", name, off[2], data_len)
      end
      out[name] = tensor_from_bytes(shape, dt, bytes, data_start + off[1])
      spans[#spans + 1] = { name = name, b = off[1], e = off[2] }
    end
  end
  -- The byte ranges must tile [0, data_len): no gaps, overlaps or extra bytes.
  table.sort(spans, function(a, b) return a.b < b.b or (a.b == b.b and a.e < b.e) end)
  local at = 0
  for _, sp in ipairs(spans) do
    if sp.b ~= at then
      fail(fn, path, "tensor '%s' starts at data byte %d, expected %d (the byte ranges %s)", sp.name, sp.b, at,
        sp.b < at and "overlap" or "leave a gap")
    end
    at = sp.e
  end
  if at ~= data_len then
    fail(fn, path, "data length mismatch: the tensors cover %d bytes but the data section has %d", at, data_len)
  end
  return out, metadata
end

-- gs.save_safetensors(path, {name = tensor, ...}, metadata): tensors in name
-- order, the header padded with spaces to a multiple of 8 bytes.
function M.save_safetensors(path, tensors, metadata)
  local fn = "save_safetensors"
  if type(tensors) ~= "table" then error(fn .. ": expected a table of name = tensor", 2) end
  -- The header is JSON, so its strings must be UTF-8 (load_safetensors
  -- refuses any other header).
  local function utf8_text(what, s)
    local bad = json.utf8_invalid_at(s)
    if bad then
      local shown = s:gsub("[%c\128-\255]", function(c) return string.format("\\x%02X", c:byte()) end)
      error(string.format("%s: %s \"%s\" is not valid UTF-8 (byte %d is 0x%02X)", fn, what, shown, bad, s:byte(bad)), 3)
    end
  end
  local names = {}
  for name, t in pairs(tensors) do
    if type(name) ~= "string" then error(string.format("%s: tensor names must be strings, got %s", fn, type(name)), 2) end
    if name == "__metadata__" then error(fn .. ": '__metadata__' is reserved; pass metadata as the third argument", 2) end
    if not T.is_tensor(t) then error(string.format("%s: '%s' is not a tensor", fn, name), 2) end
    utf8_text("the tensor name", name)
    names[#names + 1] = name
  end
  table.sort(names)
  local order, header, blobs, at = {}, {}, {}, 0
  if metadata then
    for k, v in pairs(metadata) do
      if type(k) ~= "string" or type(v) ~= "string" then error(fn .. ": metadata must map strings to strings", 2) end
      utf8_text("the metadata key", k)
      utf8_text("the metadata value", v)
    end
    order[1], header.__metadata__ = "__metadata__", metadata
  end
  for _, name in ipairs(names) do
    local t = tensors[name]
    local blob = tensor_bytes(t)
    order[#order + 1] = name
    header[name] = json.object({ "dtype", "shape", "data_offsets" },
      { dtype = gs_to_st[t.dtype], shape = json.array(t:shape()), data_offsets = json.array({ at, at + #blob }) })
    blobs[#blobs + 1] = blob
    at = at + #blob
  end
  header = json.encode(json.object(order, header))
  header = header .. string.rep(" ", (8 - #header % 8) % 8)
  local parts = { le_bytes(#header, 8), header }
  for _, b in ipairs(blobs) do parts[#parts + 1] = b end
  write_file(fn, path, parts)
end

return M

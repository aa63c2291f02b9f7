-- .npy and safetensors: round trips of every dtype and shape, files written
-- by NumPy and by the safetensors package (specs/fixtures/io/, made by
-- scripts/make_io_fixtures.py), and a clear error for every kind of bad file.
local ffi = require("ffi")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "specs"
local FIX = here .. "/fixtures/io/"

local DTYPES = { "f64", "f32", "bf16", "f16", "i32", "i64" }
local SIZE = { f64 = 8, f32 = 4, bf16 = 2, f16 = 2, i32 = 4, i64 = 8 }
local FLOAT = { f64 = true, f32 = true, bf16 = true, f16 = true }

-- Each element's bits as hex (most significant byte first), row-major.
local function bits(t)
  local h = t:to("cpu")
  local size = SIZE[h.dtype]
  local p = ffi.cast("const uint8_t *", h:data())
  local out = {}
  local dims = h:dim()
  local rows, cols = dims == 2 and h.rows or 1, dims == 0 and 1 or h.cols
  for r = 0, rows - 1 do
    for c = 0, cols - 1 do
      local base = (r * h.stride + c) * size
      local hex = {}
      for k = size - 1, 0, -1 do hex[#hex + 1] = string.format("%02x", p[base + k]) end
      out[#out + 1] = table.concat(hex)
    end
  end
  return out
end

local function same_tensor(actual, expected)
  assert.equal(actual.dtype, expected.dtype)
  assert.equal(actual:shape(), expected:shape())
  assert.equal(bits(actual), bits(expected))
end

local function tmp(suffix)
  local p = os.tmpname()
  os.remove(p)
  return p .. suffix
end

local function read_bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write_bytes(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Values worth a round trip: random ones plus the special ones of each type.
local function sample(dtype, shape, stride)
  local t
  if FLOAT[dtype] then
    t = gs.randn(shape, { dtype = dtype, stride = stride })
  else
    t = gs.randint(-1000, 1000, shape, { dtype = dtype, stride = stride })
  end
  if t:numel() == 0 then return t end
  local specials = FLOAT[dtype] and { 0 / 0, 1 / 0, -1 / 0, -0.0, 1e4, -1e4 }
    or { dtype == "i32" and -2 ^ 31 or -2 ^ 53, dtype == "i32" and 2 ^ 31 - 1 or 2 ^ 53, 0, -1 }
  local k = 0
  local dims = t:dim()
  for _, v in ipairs(specials) do
    if k >= t:numel() then break end
    if dims == 2 then t:set(math.floor(k / t.cols), k % t.cols, v)
    elseif dims == 1 then t:set(k, v)
    else t:set(v) end
    k = k + 1
  end
  return t
end

-- Shapes: 0-D, 1-D, 2-D, empty ones, and rows that are not contiguous.
local SHAPES = {
  { name = "0-D", shape = {} },
  { name = "1-D", shape = { 7 } },
  { name = "1-D empty", shape = { 0 } },
  { name = "2-D", shape = { 3, 4 } },
  { name = "2-D with 0 rows", shape = { 0, 3 } },
  { name = "2-D with 0 columns", shape = { 3, 0 } },
  { name = "2-D strided rows", shape = { 3, 4 }, stride = 6 },
}

local FORMATS = {
  npy = {
    save = function(path, t) gs.save_npy(path, t) end,
    load = function(path) return gs.load_npy(path) end,
  },
  safetensors = {
    save = function(path, t) gs.save_safetensors(path, { x = t }) end,
    load = function(path) return gs.load_safetensors(path).x end,
  },
}

for _, fmt_name in ipairs({ "npy", "safetensors" }) do
  local F = FORMATS[fmt_name]
  describe(fmt_name .. " round trip", function()
    for _, dtype in ipairs(DTYPES) do
      for _, s in ipairs(SHAPES) do
        it(string.format("%s %s keeps every bit", dtype, s.name), function()
          local t = sample(dtype, s.shape, s.stride)
          local path = tmp("." .. fmt_name)
          F.save(path, t)
          local back = F.load(path)
          os.remove(path)
          same_tensor(back, t)
          assert.is_true(back:is_contiguous(), "a loaded tensor is contiguous")
        end)
      end
    end

    it("a column slice (row stride larger than the width) saves only its columns", function()
      local base = gs.arange(0, 20, { dtype = "f32" })
      local m = gs.empty({ 4, 5 }, { dtype = "f32" })
      for r = 0, 3 do for c = 0, 4 do m:set(r, c, base:get(r * 5 + c)) end end
      local view = m:cols_view(1, 3)
      local path = tmp("." .. fmt_name)
      F.save(path, view)
      local back = F.load(path)
      os.remove(path)
      assert.equal(back:shape(), { 4, 3 })
      assert.equal(back:totable(), { { 1, 2, 3 }, { 6, 7, 8 }, { 11, 12, 13 }, { 16, 17, 18 } })
    end)

    it("bf16 bit patterns are preserved: NaN payload, -0, subnormal, infinities", function()
      local patterns = { 0x3F80, 0xC000, 0x7F80, 0xFF80, 0x7FC1, 0xFFFF, 0x0001, 0x8000, 0x7F7F, 0x7F81 }
      local t = gs.empty({ 2, 5 }, { dtype = "bf16" })
      local p = t:ptr()
      for i, b in ipairs(patterns) do p[i - 1] = b end
      local path = tmp("." .. fmt_name)
      F.save(path, t)
      local back = F.load(path)
      os.remove(path)
      local q = back:ptr()
      for i, b in ipairs(patterns) do
        assert.equal(tonumber(q[i - 1]), b, string.format("element %d", i - 1))
      end
    end)
  end)
end

describe("save_npy", function()
  it("writes a header NumPy reads: 64-byte aligned, version 1.0, C order", function()
    local path = tmp(".npy")
    gs.save_npy(path, gs.zeros({ 2, 3 }, { dtype = "f32" }))
    local s = read_bytes(path)
    os.remove(path)
    assert.equal(s:sub(1, 8), "\147NUMPY\1\0")
    local hlen = s:byte(9) + 256 * s:byte(10)
    assert.equal((10 + hlen) % 64, 0)
    assert.equal(s:sub(10 + hlen, 10 + hlen), "\n")
    assert.is_true(s:find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 1, true) ~= nil)
    assert.equal(#s, 10 + hlen + 24)
  end)

  it("writes a 1-D shape as a one-element tuple and a 0-D shape as ()", function()
    local p1, p0 = tmp(".npy"), tmp(".npy")
    gs.save_npy(p1, gs.zeros({ 3 }))
    gs.save_npy(p0, gs.tensor(1.0))
    local s1, s0 = read_bytes(p1), read_bytes(p0)
    os.remove(p1)
    os.remove(p0)
    assert.is_true(s1:find("'shape': (3,)", 1, true) ~= nil)
    assert.is_true(s0:find("'shape': ()", 1, true) ~= nil)
  end)

  it("bf16 is written as 'bfloat16', or as '<V2' on request, and both load back", function()
    local t = gs.tensor({ 1, -2, 0.5 }, { dtype = "bf16" })
    local pa, pb = tmp(".npy"), tmp(".npy")
    gs.save_npy(pa, t)
    gs.save_npy(pb, t, { bf16_descr = "<V2" })
    assert.is_true(read_bytes(pa):find("'descr': 'bfloat16'", 1, true) ~= nil)
    assert.is_true(read_bytes(pb):find("'descr': '<V2'", 1, true) ~= nil)
    same_tensor(gs.load_npy(pa), t)
    same_tensor(gs.load_npy(pb, { dtype = "bf16" }), t)
    os.remove(pa)
    os.remove(pb)
  end)
end)

describe("files written by NumPy", function()
  it("f64 2x3", function()
    local t = gs.load_npy(FIX .. "np_f64_2x3.npy")
    assert.equal(t.dtype, "f64")
    assert.equal(t:totable(), { { -1, -0.5, 0 }, { 0.5, 1, 1.5 } })
  end)

  it("f32 specials keep their bits: -0, inf, -inf, NaN, subnormal, max", function()
    local t = gs.load_npy(FIX .. "np_f32_specials.npy")
    assert.equal(t.dtype, "f32")
    assert.equal(bits(t), { "00000000", "80000000", "3fc00000", "7f800000", "ff800000", "7fc00000",
      "00000001", "7f7fffff" })
  end)

  it("f16 2x2 with the largest finite and the smallest subnormal", function()
    local t = gs.load_npy(FIX .. "np_f16_2x2.npy")
    assert.equal(t.dtype, "f16")
    assert.equal(bits(t), { "3c00", "c100", "7bff", "0001" })
  end)

  it("i32 extremes", function()
    local t = gs.load_npy(FIX .. "np_i32.npy")
    assert.equal(t.dtype, "i32")
    assert.equal(t:totable(), { -2 ^ 31, -1, 0, 2 ^ 31 - 1 })
  end)

  it("i64 values beyond 2^53 are exact", function()
    local t = gs.load_npy(FIX .. "np_i64_2x2.npy")
    assert.equal(t.dtype, "i64")
    assert.equal(t:shape(), { 2, 2 })
    assert.equal(bits(t), { "c000000000000000", "0020000000000001", "0000000000000000", "0000000000000007" })
  end)

  it("a 0-D array is a 0-D tensor", function()
    local t = gs.load_npy(FIX .. "np_f32_scalar.npy")
    assert.equal(t:dim(), 0)
    assert.equal(t:item(), 2.5)
  end)

  it("an empty 0x3 array", function()
    local t = gs.load_npy(FIX .. "np_f32_0x3.npy")
    assert.equal(t:shape(), { 0, 3 })
    assert.equal(t:numel(), 0)
  end)

  it("ml_dtypes bfloat16 saved by np.save ('<V2') loads with dtype = \"bf16\"", function()
    local t = gs.load_npy(FIX .. "np_bf16_v2.npy", { dtype = "bf16" })
    assert.equal(t.dtype, "bf16")
    assert.equal(bits(t), { "3f80", "c000", "7f80", "ff80", "7fc1", "0001", "8000", "7f7f" })
  end)

  it("descr 'bfloat16' loads as bf16 without being asked", function()
    local t = gs.load_npy(FIX .. "np_bf16_descr.npy")
    assert.equal(t.dtype, "bf16")
    assert.equal(bits(t), { "3f80", "c000", "7f80", "ff80", "7fc1", "0001", "8000", "7f7f" })
  end)

  it("fortran_order True is transposed into row-major storage", function()
    local t = gs.load_npy(FIX .. "np_f32_fortran_2x3.npy")
    assert.equal(t:totable(), { { 0, 1, 2 }, { 3, 4, 5 } })
  end)

  it("big-endian '>f4' is byte-swapped", function()
    local t = gs.load_npy(FIX .. "np_f32_big_endian_2x3.npy")
    assert.equal(t.dtype, "f32")
    assert.equal(t:totable(), { { 0, 1, 2 }, { 3, 4, 5 } })
  end)

  it("format version 2.0", function()
    assert.equal(gs.load_npy(FIX .. "np_f32_v2.npy"):totable(), { 1, 2, 3 })
  end)
end)

describe("files written by the safetensors package", function()
  it("every supported dtype, a 0-D and an empty tensor, and the metadata", function()
    local t, meta = gs.load_safetensors(FIX .. "st_all.safetensors")
    local names = {}
    for k in pairs(t) do names[#names + 1] = k end
    table.sort(names)
    assert.equal(names, { "bf16", "empty", "f16", "f32", "f64", "i32", "i64", "scalar" })
    assert.equal(meta, { format = "np", made_by = "make_io_fixtures.py" })
    assert.equal(t.f64:totable(), { { -1, -0.5, 0 }, { 0.5, 1, 1.5 } })
    assert.equal(bits(t.f32), { "00000000", "80000000", "3fc00000", "7f800000", "ff800000", "7fc00000" })
    assert.equal(bits(t.f16), { "3c00", "c100", "7bff", "0001" })
    assert.equal(t.i32:totable(), { -2 ^ 31, -1, 0, 2 ^ 31 - 1 })
    assert.equal(bits(t.i64), { "c000000000000000", "0020000000000001", "0000000000000000", "0000000000000007" })
    assert.equal(t.bf16.dtype, "bf16")
    assert.equal(bits(t.bf16), { "3f80", "c000", "7f80", "ff80", "7fc1", "0001", "8000", "7f7f" })
    assert.equal(t.scalar:dim(), 0)
    assert.equal(t.scalar:item(), 2.5)
    assert.equal(t.empty:shape(), { 0, 3 })
  end)

  it("several tensors and metadata survive our own round trip", function()
    local path = tmp(".safetensors")
    local a = gs.randn({ 3, 5 }, { dtype = "f32" })
    local b = gs.randint(0, 9, { 4 }, { dtype = "i32" })
    gs.save_safetensors(path, { ["weight \"q\"\n"] = a, b = b }, { note = "tab\there" })
    local t, meta = gs.load_safetensors(path)
    local s = read_bytes(path)
    os.remove(path)
    same_tensor(t["weight \"q\"\n"], a)
    same_tensor(t.b, b)
    assert.equal(meta, { note = "tab\there" })
    local hlen = s:byte(1) + 256 * s:byte(2)
    assert.equal(hlen % 8, 0, "the header is padded to 8 bytes")
  end)
end)

-- Every bad file must be named in the error with what is wrong with it.
local function fails_with(fn, path, what)
  local msg = assert.error(fn, what)
  assert.is_true(msg:find(path, 1, true) ~= nil, "the message names the file: " .. msg)
end

describe("bad .npy files", function()
  local good = read_bytes(FIX .. "np_f64_2x3.npy")
  local path
  before_each(function() path = tmp(".npy") end)
  after_each(function() os.remove(path) end)

  local function load_bytes(s, opts)
    write_bytes(path, s)
    return function() return gs.load_npy(path, opts) end
  end

  it("a missing file", function()
    fails_with(function() gs.load_npy(path) end, path, "cannot open")
  end)

  it("wrong magic", function()
    fails_with(load_bytes("\147NUMPZ" .. good:sub(7)), path, "not a .npy file")
    fails_with(load_bytes(""), path, "not a .npy file")
  end)

  it("an unknown format version", function()
    fails_with(load_bytes(good:sub(1, 6) .. "\9\0" .. good:sub(9)), path, "unsupported .npy format version 9.0")
  end)

  it("a header cut short", function()
    fails_with(load_bytes(good:sub(1, 40)), path, "truncated: the header says it is 118 bytes")
  end)

  it("data cut short", function()
    fails_with(load_bytes(good:sub(1, #good - 3)), path, "truncated: shape (2, 3) of f64 needs 48 data bytes, the file has 45")
  end)

  it("data longer than the shape says", function()
    fails_with(load_bytes(good .. "\0\0\0\0\0\0\0\0"), path, "data length mismatch: shape (2, 3) of f64 needs 48 data bytes, the file has 56")
  end)

  it("a header that is not a Python dict", function()
    fails_with(load_bytes((good:gsub("'shape': %(2, 3%)", "'shape': [2, 3}"))), path, "malformed header")
    fails_with(load_bytes((good:gsub("'shape'", "'shapo'"))), path, "malformed header: no 'shape' key")
    fails_with(load_bytes((good:gsub("False", "Maybe"))), path, "malformed header: unknown word Maybe")
  end)

  it("an unsupported dtype names the descr", function()
    local p = FIX .. "np_u8.npy"
    fails_with(function() gs.load_npy(p) end, p, "unsupported descr '|u1'")
  end)

  it("a structured dtype", function()
    local p = FIX .. "np_structured.npy"
    fails_with(function() gs.load_npy(p) end, p, "structured dtype")
  end)

  it("more than 2 dims", function()
    local p = FIX .. "np_f64_3d.npy"
    fails_with(function() gs.load_npy(p) end, p, "shape (2, 2, 2) has 3 dims")
  end)

  it("'<V2' without dtype = \"bf16\" says how to read it", function()
    local p = FIX .. "np_bf16_v2.npy"
    fails_with(function() gs.load_npy(p) end, p, "pass {dtype = \"bf16\"}")
    fails_with(function() gs.load_npy(p, { dtype = "f16" }) end, p, "pass {dtype = \"bf16\"}")
  end)

  it("a dtype that does not match the file", function()
    local p = FIX .. "np_f64_2x3.npy"
    fails_with(function() gs.load_npy(p, { dtype = "f32" }) end, p, "the file holds f64 (descr '<f8') but dtype = \"f32\" was asked for")
  end)
end)

-- A safetensors file from a header text and data bytes.
local function st_bytes(header, data)
  local n = #header
  local len = {}
  for i = 1, 8 do
    len[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(len) .. header .. (data or "")
end

describe("bad safetensors files", function()
  local path
  before_each(function() path = tmp(".safetensors") end)
  after_each(function() os.remove(path) end)

  local function load_bytes(s)
    write_bytes(path, s)
    return function() return gs.load_safetensors(path) end
  end
  local eight_bytes = string.rep("\0", 8)

  it("a missing file", function()
    fails_with(function() gs.load_safetensors(path) end, path, "cannot open")
  end)

  it("shorter than the header length", function()
    fails_with(load_bytes("abc"), path, "truncated: 3 bytes")
  end)

  it("a header length past the end of the file", function()
    fails_with(load_bytes(st_bytes("{}"):sub(1, 9)), path, "truncated: the header length says 2 bytes but only 1 follow")
  end)

  it("an absurd header length (not a safetensors file)", function()
    fails_with(load_bytes("\147NUMPY\1\0{'descr'"), path, "over the 100 MB limit")
  end)

  it("a header that is not JSON", function()
    fails_with(load_bytes(st_bytes("[1, 2]   ")), path, "does not start with '{'")
    fails_with(load_bytes(st_bytes('{"x": {"dtype": "F32",}}')), path, "malformed JSON header")
  end)

  it("an unsupported dtype names the tensor and the dtype", function()
    local p = FIX .. "st_u8.safetensors"
    fails_with(function() gs.load_safetensors(p) end, p, "tensor 'bytes' has dtype U8")
    fails_with(load_bytes(st_bytes('{"e4m3":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}', eight_bytes)),
      path, "tensor 'e4m3' has dtype F8_E4M3")
  end)

  it("more than 2 dims names the tensor", function()
    local p = FIX .. "st_3d.safetensors"
    fails_with(function() gs.load_safetensors(p) end, p, "tensor 'cube' has shape [2, 2, 2] with 3 dims")
  end)

  it("a byte range that does not match the shape", function()
    fails_with(load_bytes(st_bytes('{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', eight_bytes)),
      path, "tensor 'x': data length mismatch: shape [3] of F32 needs 12 bytes, data_offsets [0, 8] span 8")
  end)

  it("data cut short", function()
    fails_with(load_bytes(st_bytes('{"x":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}', eight_bytes)),
      path, "truncated: tensor 'x' ends at data byte 16 but the data section has 8 bytes")
  end)

  it("bytes no tensor covers", function()
    fails_with(load_bytes(st_bytes('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', eight_bytes)),
      path, "data length mismatch: the tensors cover 4 bytes but the data section has 8")
    fails_with(load_bytes(st_bytes('{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eight_bytes)),
      path, "tensor 'x' starts at data byte 4, expected 0 (the byte ranges leave a gap)")
  end)

  it("overlapping tensors", function()
    fails_with(load_bytes(st_bytes('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
      .. '"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eight_bytes)),
      path, "the byte ranges overlap")
  end)

  it("entries without dtype, shape or offsets", function()
    fails_with(load_bytes(st_bytes('{"x":{"shape":[1],"data_offsets":[0,4]}}', "\0\0\0\0")), path, "tensor 'x': no dtype")
    fails_with(load_bytes(st_bytes('{"x":{"dtype":"F32","shape":3,"data_offsets":[0,4]}}', "\0\0\0\0")), path,
      "tensor 'x': shape is not a list")
    fails_with(load_bytes(st_bytes('{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', "\0\0\0\0")), path,
      "tensor 'x': data_offsets must be [begin, end]")
  end)
end)

describe("interop with NumPy #numpy", function()
  local has_numpy = os.execute("python3 -c 'import numpy' >/dev/null 2>&1") == 0
  skip_if(not has_numpy, "python3 with numpy is not installed")

  it("np.load reads what save_npy wrote, values and all", function()
    local path = tmp(".npy")
    local t = gs.tensor({ { 1.5, -2, 0 / 0 }, { 1 / 0, -0.0, 3 } }, { dtype = "f32" })
    gs.save_npy(path, t)
    local cmd = string.format("python3 -c \"import numpy as np; a = np.load('%s'); "
      .. "print(a.dtype, a.shape, ' '.join(repr(float(x)) for x in a.ravel()))\"", path)
    local pipe = io.popen(cmd)
    local out = pipe:read("*a")
    pipe:close()
    os.remove(path)
    assert.equal(out, "float32 (2, 3) 1.5 -2.0 nan inf -0.0 3.0\n")
  end)
end)

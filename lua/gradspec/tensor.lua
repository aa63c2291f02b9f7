-- Tensors: C buffers owned by Lua objects (freed by ffi.gc), 0-D, 1-D or 2-D,
-- with a row stride so that rows need not be contiguous.
--
-- Indexing is 0-based everywhere, like C and PyTorch: t:get(0, 0) is the
-- first element, t:row(0) the first row, and class indices in targets are
-- 0-based values. Lua tables passed to gs.tensor are ordinary 1-based tables.
local gffi = require("gradspec.ffi")
local dtypes = require("gradspec.dtype")
local ffi, C = gffi.ffi, gffi.C

local Tensor = {}
Tensor.__index = Tensor

local M = { Tensor = Tensor }

function M.is_tensor(x) return getmetatable(x) == Tensor end

local function fail(level, fmt, ...) error(string.format(fmt, ...), level + 1) end

local err_buf = ffi.new("gs_error")
local GS_ERR_NO_DEVICE = 6 -- gs_status in kernels/gs_types.h

local function cuda_call(what, st)
  if st ~= 0 then fail(3, "%s: %s", what, ffi.string(err_buf.msg)) end
end

-- Sizes, strides and indices travel to C as int64 and byte counts as
-- size_t. Every integer below 2^53 is exact in a Lua number, so a buffer is
-- at most MAX_BYTES: a product of sizes that reaches it is refused before it
-- can wrap around in C.
local MAX_BYTES = 2 ^ 53
M.MAX_BYTES = MAX_BYTES

-- A number as a reader wants it in a message: integers in full (2^61 is
-- 2305843009213693952, not 2.3058430092137e+18), nan and inf by name,
-- strings quoted, other values by their type.
local function num_text(x)
  if type(x) == "string" then return string.format("%q", x) end
  if type(x) ~= "number" then return type(x) == "nil" and "nil" or tostring(x) end
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  if x == math.floor(x) and math.abs(x) < 2 ^ 63 then return string.format("%.0f", x) end
  for digits = 14, 16 do
    local t = string.format("%." .. digits .. "g", x)
    if tonumber(t) == x then return t end
  end
  return string.format("%.17g", x)
end
M.num_text = num_text

-- "{2, 3}" for a shape as the caller gave it (any values).
local function shape_text(shape)
  if type(shape) ~= "table" then return "{" .. num_text(shape) .. "}" end
  local parts = {}
  for i = 1, #shape do parts[i] = num_text(shape[i]) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function is_int(x) return type(x) == "number" and x == math.floor(x) and x - x == 0 end

-- A byte count for a message: exact below 2^53, else rounded.
local function bytes_text(b)
  if b < MAX_BYTES then return string.format("%.0f", b) end
  return string.format("%.4g", b)
end

-- A storage is the allocation a tensor and its views share. `fname` and
-- `shape` (text) say what the bytes are for in the error when they cannot
-- be had.
local function new_storage(bytes, device, fname, shape, level)
  level = (level or 2) + 1
  local n = math.max(bytes, 1)
  if device == "cpu" then
    local p = C.gs_alloc(n)
    if p == nil then
      fail(level, "%s: out of host memory allocating %s bytes for shape %s", fname or "alloc", bytes_text(bytes),
        shape or "?")
    end
    return { ptr = ffi.gc(p, C.gs_free), bytes = bytes, device = "cpu" }
  elseif device == "cuda" then
    local pp = ffi.new("void *[1]")
    local st = C.gs_cuda_malloc(pp, n, err_buf)
    if st ~= 0 then
      -- With no device the allocation's own error is CUDA's terse text; the
      -- device count says in plain words why there is no device.
      if st == GS_ERR_NO_DEVICE then C.gs_cuda_device_count(err_buf) end
      fail(level, "%s: cannot allocate on cuda %s bytes for shape %s: %s", fname or "alloc", bytes_text(bytes),
        shape or "?", ffi.string(err_buf.msg))
    end
    local st = C.gs_cuda_memset(pp[0], 0, n, err_buf)
    if st ~= 0 then
      C.gs_cuda_free(pp[0])
      fail(level, "cuda memset: %s", ffi.string(err_buf.msg))
    end
    return { ptr = ffi.gc(pp[0], C.gs_cuda_free), bytes = bytes, device = "cuda" }
  end
  fail(level, "device: unknown device %s (expected \"cpu\" or \"cuda\")", tostring(device))
end

local function check_device(device)
  device = device or "cpu"
  if device ~= "cpu" and device ~= "cuda" then
    fail(3, "device: unknown device %s (expected \"cpu\" or \"cuda\")", tostring(device))
  end
  return device
end

-- shape: n, {n}, {rows, cols} or {} (a scalar). Every size is a finite
-- non-negative integer; the error names the function and the whole shape.
local function norm_shape(fname, shape, level)
  if type(shape) == "number" then shape = { shape } end
  if type(shape) ~= "table" or M.is_tensor(shape) then
    fail(level + 1, "%s: shape must be a number or a table of at most 2 sizes, got %s", fname,
      M.is_tensor(shape) and "a tensor" or num_text(shape))
  end
  local n = 0
  for _ in pairs(shape) do n = n + 1 end
  if n ~= #shape then
    fail(level + 1, "%s: shape must be a list of sizes {rows, cols}, got a table with %d keys and length %d",
      fname, n, #shape)
  end
  if #shape > 2 then
    fail(level + 1, "%s: shape %s has %d sizes; tensors have at most 2", fname, shape_text(shape), #shape)
  end
  local out = {}
  for i = 1, #shape do
    local s = shape[i]
    if not is_int(s) or s < 0 then
      fail(level + 1, "%s: shape %s: shape[%d] = %s is not a non-negative integer", fname, shape_text(shape), i,
        num_text(s))
    end
    out[i] = s
  end
  return out
end

-- Builds the Lua object around a storage. rows x cols is the logical block;
-- 1-D tensors are one row, scalars one element.
local function wrap(storage, shape, dt, offset, stride)
  local rows, cols
  if #shape == 2 then rows, cols = shape[1], shape[2]
  elseif #shape == 1 then rows, cols = 1, shape[1]
  else rows, cols = 1, 1 end
  return setmetatable({
    storage = storage, dtype = dt.name, device = storage.device, _dt = dt,
    _shape = shape, rows = rows, cols = cols, stride = stride or cols, offset = offset or 0,
  }, Tensor)
end

-- Views and copies remember their source: asserting on them asserts on it.
local function derived(t, source)
  t._sources = { source }
  return t
end

-- The elements a rows x cols block with this row stride spans in storage.
local function span(rows, cols, stride)
  if rows == 0 or cols == 0 then return 0 end
  return (rows - 1) * stride + cols
end

-- Allocates a zero-filled tensor for the function `fname` (named in its
-- errors). opts: dtype, device, stride. `level` is counted from alloc's
-- caller, as error() counts it.
local function alloc(fname, shape, opts, level)
  level = level + 1
  if opts ~= nil and type(opts) ~= "table" then
    fail(level, "%s: opts must be a table, got %s", fname, num_text(opts))
  end
  opts = opts or {}
  shape = norm_shape(fname, shape, level)
  local dt = dtypes.lookup(opts.dtype or "f32")
  if not dt then
    fail(level, "%s: dtype: unknown dtype %s (expected one of %s)", fname, tostring(opts.dtype),
      table.concat(dtypes.names, ", "))
  end
  local device = opts.device or "cpu"
  if device ~= "cpu" and device ~= "cuda" then
    fail(level, "%s: device: unknown device %s (expected \"cpu\" or \"cuda\")", fname, tostring(device))
  end
  local cols = #shape == 2 and shape[2] or (#shape == 1 and shape[1] or 1)
  local rows = #shape == 2 and shape[1] or 1
  local stride = opts.stride or cols
  if #shape ~= 2 and opts.stride then fail(level, "%s: stride: only 2-D tensors take a row stride", fname) end
  local stext = shape_text(shape)
  if not is_int(stride) then
    fail(level, "%s: stride = %s for shape %s is not an integer", fname, num_text(stride), stext)
  end
  if stride < cols then
    fail(level, "%s: stride = %s is smaller than the row length %s of shape %s", fname, num_text(stride),
      num_text(cols), stext)
  end
  if opts.stride then stext = stext .. " with stride " .. num_text(stride) end
  -- Each factor is an exact integer; a product at or past MAX_BYTES may be
  -- rounded, but rounding never carries a true product from above it to
  -- below it, so this test is exact.
  local bytes = span(rows, cols, stride) * dt.size
  if bytes >= MAX_BYTES then
    fail(level, "%s: shape %s of %s needs %s bytes, more than a buffer can hold (2^53 bytes)", fname, stext,
      dt.name, bytes_text(bytes))
  end
  return wrap(new_storage(bytes, device, fname, stext, level), shape, dt, 0, stride)
end

-- Allocates an uninitialised (zero-filled) tensor. opts: dtype, device, stride.
-- (The results go through a local: a tail call would drop the frame that
-- the errors' level counts on.)
function M.empty(shape, opts)
  local t = alloc("empty", shape, opts, 2)
  return t
end

-- Elements from the first to one past the last, in storage order.
function Tensor:span_elems() return span(self.rows, self.cols, self.stride) end

function Tensor:data()
  return ffi.cast("char *", self.storage.ptr) + self.offset * self._dt.size
end

-- A typed pointer to the first element (host tensors only).
function Tensor:ptr()
  if self.device ~= "cpu" then fail(2, "ptr: tensor is on %s; call :to(\"cpu\") first", self.device) end
  return ffi.cast(self._dt.ptr, self:data())
end

function Tensor:shape()
  local s = {}
  for i, v in ipairs(self._shape) do s[i] = v end
  return s
end

function Tensor:dim() return #self._shape end
function Tensor:numel() return self.rows * self.cols end
function Tensor:is_contiguous() return self.rows <= 1 or self.stride == self.cols end

function Tensor:size(d)
  if d == nil then return self:shape() end
  local v = self._shape[d + 1]
  if v == nil then fail(2, "size: dim %s is outside [0, %d)", tostring(d), #self._shape) end
  return v
end

-- One index along a dim of n: an integer in [0, n). `what` says where it
-- goes ("for dim 0 of shape {2, 3}").
local function check_index(i, n, what, level)
  if not is_int(i) then
    fail(level + 1, "index %s is not an integer (%s)", num_text(i), what)
  end
  if i < 0 or i >= n then
    fail(level + 1, "index %s is outside [0, %s) %s", num_text(i), num_text(n), what)
  end
end

-- Storage index of a logical element; checks bounds and names the bad index.
local function locate(t, i, j, level)
  local nd = #t._shape
  if nd == 2 then
    if j == nil then fail(level + 1, "index: a 2-D tensor needs two indices, got one") end
    local s = M.shape_string(t)
    check_index(i, t.rows, "for dim 0 of shape " .. s, level + 1)
    check_index(j, t.cols, "for dim 1 of shape " .. s, level + 1)
    return i * t.stride + j
  elseif nd == 1 then
    if j ~= nil then fail(level + 1, "index: a 1-D tensor takes one index, got two") end
    check_index(i, t.cols, "for shape " .. M.shape_string(t), level + 1)
    return i
  end
  if i ~= nil and i ~= 0 then fail(level + 1, "index: a scalar tensor takes no index") end
  return 0
end

local scratch = new_storage(8, "cpu")

-- Reads one element as a Lua number (a copy for cuda tensors).
function Tensor:get(i, j)
  local k = locate(self, i, j, 2)
  if self.device == "cpu" then return C.gs_load(self:data(), self._dt.code, k) end
  cuda_call("get", C.gs_cuda_memcpy(scratch.ptr, self:data() + k * self._dt.size, self._dt.size, 1, err_buf))
  return C.gs_load(scratch.ptr, self._dt.code, 0)
end

-- t:set(x) for a scalar, t:set(i, x) for 1-D, t:set(i, j, x) for 2-D.
function Tensor:set(...)
  local nd, n = #self._shape, select("#", ...)
  if n ~= nd + 1 then fail(2, "set: a %d-D tensor takes %d index(es) and a value, got %d arguments", nd, nd, n) end
  local i, j, x
  if nd == 2 then i, j, x = ... elseif nd == 1 then i, x = ... else x = ... end
  if type(x) ~= "number" then fail(2, "set: value %s is not a number", tostring(x)) end
  local k = locate(self, i, j, 2)
  if self.device == "cpu" then
    C.gs_store(self:data(), self._dt.code, k, x)
  else
    C.gs_store(scratch.ptr, self._dt.code, 0, x)
    cuda_call("set", C.gs_cuda_memcpy(self:data() + k * self._dt.size, scratch.ptr, self._dt.size, 0, err_buf))
  end
  return self
end

function Tensor:item()
  if self:numel() ~= 1 then
    fail(2, "item: tensor has %d elements; item() needs exactly one", self:numel())
  end
  if #self._shape == 2 then return self:get(0, 0) end
  return self:get(0)
end

-- Row i as a 1-D view sharing storage.
function Tensor:row(i)
  if #self._shape ~= 2 then fail(2, "row: needs a 2-D tensor, this one has %d dims", #self._shape) end
  if not is_int(i) then
    fail(2, "row %s is not an integer (shape %s)", num_text(i), M.shape_string(self))
  end
  if i < 0 or i >= self.rows then
    fail(2, "row %s is outside [0, %d) (shape %s)", num_text(i), self.rows, M.shape_string(self))
  end
  return derived(wrap(self.storage, { self.cols }, self._dt, self.offset + i * self.stride, self.cols), self)
end

-- first and count of a rows_view or cols_view: integers, the range inside
-- [0, n).
local function check_range(fname, what, first, count, n, shape, level)
  if not is_int(first) then
    fail(level + 1, "%s: first = %s is not an integer (shape %s)", fname, num_text(first), shape)
  end
  if not is_int(count) then
    fail(level + 1, "%s: count = %s is not an integer (shape %s)", fname, num_text(count), shape)
  end
  if first < 0 or count < 0 or first + count > n then
    fail(level + 1, "%s: %s [%s, %s) are outside [0, %d) (shape %s)", fname, what, num_text(first),
      num_text(first + count), n, shape)
  end
end

-- One element as a 0-D view (asserting on it asserts on this tensor).
function Tensor:at(i, j)
  local k = locate(self, i, j, 2)
  return derived(wrap(self.storage, {}, self._dt, self.offset + k, 1), self)
end

-- Rows [first, first + count) as a 2-D view.
function Tensor:rows_view(first, count)
  if #self._shape ~= 2 then fail(2, "rows_view: needs a 2-D tensor") end
  check_range("rows_view", "rows", first, count, self.rows, M.shape_string(self), 2)
  return derived(wrap(self.storage, { count, self.cols }, self._dt, self.offset + first * self.stride, self.stride), self)
end

-- Columns [first, first + count) of every row: a view with a row stride
-- larger than its width (non-contiguous rows).
function Tensor:cols_view(first, count)
  if #self._shape ~= 2 then fail(2, "cols_view: needs a 2-D tensor") end
  check_range("cols_view", "columns", first, count, self.cols, M.shape_string(self), 2)
  return derived(wrap(self.storage, { self.rows, count }, self._dt, self.offset + first, self.stride), self)
end

-- Copies into a new tensor. opts: dtype, device, stride (default: keep the
-- layout when the device changes, contiguous otherwise).
local function copy(src, dt, device, stride)
  local dst = alloc("to", src:shape(), { dtype = dt.name, device = device, stride = #src._shape == 2 and stride or nil }, 3)
  local n = src:span_elems()
  if n == 0 then return dst end
  if src.device == "cpu" and device == "cpu" then
    C.gs_convert(dst:data(), dt.code, dst.stride, src:data(), src._dt.code, src.stride, src.rows, src.cols)
    return dst
  end
  -- Through the host: cuda buffers are moved whole (layout kept) with memcpy.
  local host_src = src
  if src.device == "cuda" then
    host_src = wrap(new_storage(n * src._dt.size, "cpu", "to", M.shape_string(src), 3), src:shape(), src._dt, 0, src.stride)
    cuda_call("copy from cuda", C.gs_cuda_memcpy(host_src:data(), src:data(), n * src._dt.size, 1, err_buf))
  end
  if device == "cpu" then
    C.gs_convert(dst:data(), dt.code, dst.stride, host_src:data(), host_src._dt.code, host_src.stride, src.rows, src.cols)
    return dst
  end
  local staged = host_src
  if host_src._dt ~= dt or host_src.stride ~= dst.stride then
    staged = M.empty(src:shape(), { dtype = dt.name, stride = #src._shape == 2 and dst.stride or nil })
    C.gs_convert(staged:data(), dt.code, staged.stride, host_src:data(), host_src._dt.code, host_src.stride, src.rows, src.cols)
  end
  cuda_call("copy to cuda", C.gs_cuda_memcpy(dst:data(), staged:data(), n * dt.size, 0, err_buf))
  return dst
end

-- t:to("bf16"), t:to("cuda"), t:to{dtype = "f32", device = "cpu"}.
function Tensor:to(what)
  local dt, device = self._dt, self.device
  if type(what) == "table" then
    if what.dtype then dt = dtypes.get(what.dtype, "to: dtype") end
    if what.device then device = check_device(what.device) end
  elseif what == "cpu" or what == "cuda" then
    device = what
  elseif dtypes.lookup(what) then
    dt = dtypes.lookup(what)
  else
    fail(2, "to: %s is neither a dtype (%s) nor a device (cpu, cuda)", tostring(what), table.concat(dtypes.names, ", "))
  end
  if dt == self._dt and device == self.device then return self end
  local keep = (device ~= self.device) and self.stride or nil
  return derived(copy(self, dt, device, keep), self)
end

function Tensor:clone() return derived(copy(self, self._dt, self.device, self.stride), self) end
function Tensor:contiguous()
  if self:is_contiguous() then return self end
  return derived(copy(self, self._dt, self.device, nil), self)
end

-- Writes src's values into self (same shape), converting dtype.
function Tensor:copy_(src)
  if src.rows ~= self.rows or src.cols ~= self.cols then
    fail(2, "copy_: shapes differ: %s vs %s", M.shape_string(self), M.shape_string(src))
  end
  if self.device == "cpu" and src.device ~= "cpu" then
    -- from the device: bring src over, then convert on the host
    local tmp = src:to("cpu")
    C.gs_convert(self:data(), self._dt.code, self.stride, tmp:data(), tmp._dt.code, tmp.stride, tmp.rows, tmp.cols)
    return self
  end
  if self.device ~= "cpu" then
    local tmp = src:to({ device = "cpu", dtype = self.dtype })
    local back = copy(tmp, self._dt, self.device, self.stride)
    local n = self:span_elems() * self._dt.size
    cuda_call("copy_", C.gs_cuda_memcpy(self:data(), back:data(), n, self.device == "cuda" and 2 or 1, err_buf))
    return self
  end
  C.gs_convert(self:data(), self._dt.code, self.stride, src:data(), src._dt.code, src.stride, src.rows, src.cols)
  return self
end

function Tensor:fill(x)
  if type(x) ~= "number" then fail(2, "fill: value %s is not a number", num_text(x)) end
  if self.device ~= "cpu" then return self:copy_(M.full(self:shape(), x, { dtype = self.dtype })) end
  local p, code = self:data(), self._dt.code
  for r = 0, self.rows - 1 do
    for c = 0, self.cols - 1 do C.gs_store(p, code, r * self.stride + c, x) end
  end
  return self
end

-- Nested Lua tables (1-based), numbers converted from the dtype.
function Tensor:totable()
  local t = self:to("cpu")
  local p, code = t:data(), t._dt.code
  local function row(r)
    local out = {}
    for c = 0, t.cols - 1 do out[c + 1] = C.gs_load(p, code, r * t.stride + c) end
    return out
  end
  if #t._shape == 0 then return C.gs_load(p, code, 0) end
  if #t._shape == 1 then return row(0) end
  local out = {}
  for r = 0, t.rows - 1 do out[r + 1] = row(r) end
  return out
end

function M.shape_string(t)
  return shape_text(t._shape)
end

-- Constructors ---------------------------------------------------------------

local function infer_shape(tbl)
  if type(tbl) == "number" then return {} end
  if type(tbl) ~= "table" then fail(3, "tensor: expected a number or a table of numbers, got %s", type(tbl)) end
  if type(tbl[1]) == "table" then
    local cols = #tbl[1]
    for i, r in ipairs(tbl) do
      if type(r) ~= "table" or #r ~= cols then
        fail(3, "tensor: row %d has %s elements, row 1 has %d (rows must be equally long)", i,
          type(r) == "table" and tostring(#r) or "no", cols)
      end
    end
    return { #tbl, cols }
  end
  return { #tbl }
end

-- gs.tensor({{...}, ...}, {dtype = "f32", device = "cpu", stride = n}).
function M.tensor(values, opts)
  opts = opts or {}
  local shape = infer_shape(values)
  local host = alloc("tensor", shape, { dtype = opts.dtype, stride = opts.stride }, 2)
  local p, code = host:data(), host._dt.code
  local function put(k, x, where)
    if type(x) ~= "number" then fail(3, "tensor: element %s is %s, not a number", where, tostring(x)) end
    C.gs_store(p, code, k, x)
  end
  if #shape == 0 then put(0, values, "[1]")
  elseif #shape == 1 then
    for c = 1, shape[1] do put(c - 1, values[c], "[" .. c .. "]") end
  else
    for r = 1, shape[1] do
      for c = 1, shape[2] do put((r - 1) * host.stride + c - 1, values[r][c], "[" .. r .. "][" .. c .. "]") end
    end
  end
  return host:to(check_device(opts.device))
end

local function full(fname, shape, value, opts, level)
  level = level + 1
  if type(value) ~= "number" then fail(level, "%s: value %s is not a number", fname, num_text(value)) end
  if opts ~= nil and type(opts) ~= "table" then fail(level, "%s: opts must be a table, got %s", fname, num_text(opts)) end
  opts = opts or {}
  local device = opts.device or "cpu"
  if device ~= "cpu" and device ~= "cuda" then
    fail(level, "%s: device: unknown device %s (expected \"cpu\" or \"cuda\")", fname, tostring(device))
  end
  local host = alloc(fname, shape, { dtype = opts.dtype, stride = opts.stride }, level)
  host:fill(value)
  return host:to(device)
end

function M.full(shape, value, opts)
  local t = full("full", shape, value, opts, 2)
  return t
end

function M.zeros(shape, opts)
  local t = alloc("zeros", shape, opts, 2)
  return t
end

function M.ones(shape, opts)
  local t = full("ones", shape, 1, opts, 2)
  return t
end

-- gs.arange(n) or gs.arange(start, stop[, step]), 1-D, stop excluded.
function M.arange(a, b, step, opts)
  if type(b) == "table" then opts, b = b, nil end
  if type(step) == "table" then opts, step = step, nil end
  local start, stop = a, b
  if stop == nil then start, stop = 0, a end
  step = step or 1
  for _, p in ipairs({ { "start", start }, { "stop", stop }, { "step", step } }) do
    if type(p[2]) ~= "number" or p[2] - p[2] ~= 0 then
      fail(2, "arange: %s = %s is not a finite number", p[1], num_text(p[2]))
    end
  end
  if step == 0 then fail(2, "arange: step must not be 0") end
  local n = math.max(0, math.ceil((stop - start) / step))
  if n >= MAX_BYTES then
    fail(2, "arange: %s elements from %s to %s by %s are more than a tensor can hold", bytes_text(n),
      num_text(start), num_text(stop), num_text(step))
  end
  local t = alloc("arange", { n }, { dtype = (opts and opts.dtype) or "f32" }, 2)
  local p, code = t:data(), t._dt.code
  for i = 0, n - 1 do C.gs_store(p, code, i, start + i * step) end
  return t:to(check_device(opts and opts.device))
end

-- Random tensors -------------------------------------------------------------
-- Each call without an explicit seed takes the next stream of the run's
-- seed, so a spec reruns identically under the same --seed.
local run_seed, stream = 0, 0

function M.set_seed(seed)
  run_seed, stream = seed, 0
end

function M.get_seed() return run_seed end

local function next_seed(opts)
  if opts.seed then return opts.seed end
  stream = stream + 1
  return run_seed * 1000003 + stream
end

-- The parameters of a distribution: finite numbers.
local function check_params(fname, names, values, level)
  for i, name in ipairs(names) do
    local v = values[i]
    if type(v) ~= "number" or v - v ~= 0 then
      fail(level + 1, "%s: %s = %s is not a finite number", fname, name, num_text(v))
    end
  end
end

local function random(fname, shape, opts, dist, a, b, level)
  level = level + 1
  if opts.seed ~= nil and not is_int(opts.seed) then
    fail(level, "%s: seed = %s is not an integer", fname, num_text(opts.seed))
  end
  local device = opts.device or "cpu"
  if device ~= "cpu" and device ~= "cuda" then
    fail(level, "%s: device: unknown device %s (expected \"cpu\" or \"cuda\")", fname, tostring(device))
  end
  local host = alloc(fname, shape, { dtype = opts.dtype, stride = opts.stride }, level)
  local seed = next_seed(opts)
  C.gs_fill_random(host:data(), host._dt.code, host.rows, host.cols, host.stride, dist,
    ffi.cast("uint64_t", seed), a, b)
  return host:to(check_device(opts.device))
end

local function table_opts(fname, opts, level)
  if opts ~= nil and type(opts) ~= "table" then
    fail(level + 1, "%s: opts must be a table, got %s", fname, num_text(opts))
  end
  return opts or {}
end

-- gs.randn(shape, {mean, std, seed, dtype, device, stride})
function M.randn(shape, opts)
  opts = table_opts("randn", opts, 2)
  local mean, std = opts.mean or 0, opts.std or 1
  check_params("randn", { "mean", "std" }, { mean, std }, 2)
  local t = random("randn", shape, opts, 1, mean, std, 2)
  return t
end

-- gs.rand(shape, {low, high, ...}): uniform in [low, high).
function M.rand(shape, opts)
  opts = table_opts("rand", opts, 2)
  local low, high = opts.low or 0, opts.high or 1
  check_params("rand", { "low", "high" }, { low, high }, 2)
  local t = random("rand", shape, opts, 0, low, high, 2)
  return t
end

-- gs.randint(low, high, shape, opts): integers in [low, high), i64 default.
function M.randint(low, high, shape, opts)
  opts = table_opts("randint", opts, 2)
  check_params("randint", { "low", "high" }, { low, high }, 2)
  if high <= low then
    fail(2, "randint: needs low < high, got low = %s, high = %s", num_text(low), num_text(high))
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.dtype = o.dtype or "i64"
  local t = random("randint", shape, o, 2, low, high, 2)
  return t
end

Tensor.__tostring = function(t) return require("gradspec.tensor_print").format(t) end
Tensor.__len = function(t) return t:numel() end

return M

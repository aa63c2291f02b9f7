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

local function cuda_call(what, st)
  if st ~= 0 then fail(3, "%s: %s", what, ffi.string(err_buf.msg)) end
end

-- A storage is the allocation a tensor and its views share.
local function new_storage(bytes, device)
  local n = math.max(bytes, 1)
  if device == "cpu" then
    local p = C.gs_alloc(n)
    if p == nil then fail(3, "out of host memory allocating %d bytes", bytes) end
    return { ptr = ffi.gc(p, C.gs_free), bytes = bytes, device = "cpu" }
  elseif device == "cuda" then
    local pp = ffi.new("void *[1]")
    cuda_call("cannot allocate on cuda", C.gs_cuda_malloc(pp, n, err_buf))
    cuda_call("cuda memset", C.gs_cuda_memset(pp[0], 0, n, err_buf))
    return { ptr = ffi.gc(pp[0], C.gs_cuda_free), bytes = bytes, device = "cuda" }
  end
  fail(3, "device: unknown device %s (expected \"cpu\" or \"cuda\")", tostring(device))
end

local function check_device(device)
  device = device or "cpu"
  if device ~= "cpu" and device ~= "cuda" then
    fail(3, "device: unknown device %s (expected \"cpu\" or \"cuda\")", tostring(device))
  end
  return device
end

-- shape: n, {n}, {rows, cols} or {} (a scalar).
local function norm_shape(shape, level)
  if type(shape) == "number" then shape = { shape } end
  if type(shape) ~= "table" or #shape > 2 then
    fail(level + 1, "shape: expected a number or a table of at most 2 sizes, got %s", tostring(shape))
  end
  local out = {}
  for i = 1, #shape do
    local s = shape[i]
    if type(s) ~= "number" or s < 0 or s ~= math.floor(s) then
      fail(level + 1, "shape[%d] = %s is not a non-negative integer", i, tostring(s))
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

-- Allocates an uninitialised (zero-filled) tensor. opts: dtype, device, stride.
function M.empty(shape, opts)
  opts = opts or {}
  shape = norm_shape(shape, 2)
  local dt = dtypes.get(opts.dtype or "f32", "dtype")
  local device = check_device(opts.device)
  local cols = #shape == 2 and shape[2] or (#shape == 1 and shape[1] or 1)
  local rows = #shape == 2 and shape[1] or 1
  local stride = opts.stride or cols
  if #shape ~= 2 and opts.stride then fail(2, "stride: only 2-D tensors take a row stride") end
  if type(stride) ~= "number" or stride < cols then
    fail(2, "stride = %s is smaller than the row length %d", tostring(stride), cols)
  end
  local elems = rows == 0 and 0 or (rows - 1) * stride + cols
  return wrap(new_storage(elems * dt.size, device), shape, dt, 0, stride)
end

-- Bytes from the first to one past the last element, in storage order.
function Tensor:span_elems()
  if self.rows == 0 or self.cols == 0 then return 0 end
  return (self.rows - 1) * self.stride + self.cols
end

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

-- Storage index of a logical element; checks bounds and names the bad index.
local function locate(t, i, j, level)
  local nd = #t._shape
  if nd == 2 then
    if j == nil then fail(level + 1, "index: a 2-D tensor needs two indices, got one") end
    if type(i) ~= "number" or i < 0 or i >= t.rows or i ~= math.floor(i) then
      fail(level + 1, "index %s is outside [0, %d) for dim 0 of shape {%d, %d}", tostring(i), t.rows, t.rows, t.cols)
    end
    if type(j) ~= "number" or j < 0 or j >= t.cols or j ~= math.floor(j) then
      fail(level + 1, "index %s is outside [0, %d) for dim 1 of shape {%d, %d}", tostring(j), t.cols, t.rows, t.cols)
    end
    return i * t.stride + j
  elseif nd == 1 then
    if j ~= nil then fail(level + 1, "index: a 1-D tensor takes one index, got two") end
    if type(i) ~= "number" or i < 0 or i >= t.cols or i ~= math.floor(i) then
      fail(level + 1, "index %s is outside [0, %d) for shape {%d}", tostring(i), t.cols, t.cols)
    end
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
  if type(i) ~= "number" or i < 0 or i >= self.rows then
    fail(2, "row %s is outside [0, %d)", tostring(i), self.rows)
  end
  return derived(wrap(self.storage, { self.cols }, self._dt, self.offset + i * self.stride, self.cols), self)
end

-- One element as a 0-D view (asserting on it asserts on this tensor).
function Tensor:at(i, j)
  local k = locate(self, i, j, 2)
  return derived(wrap(self.storage, {}, self._dt, self.offset + k, 1), self)
end

-- Rows [first, first + count) as a 2-D view.
function Tensor:rows_view(first, count)
  if #self._shape ~= 2 then fail(2, "rows_view: needs a 2-D tensor") end
  if first < 0 or count < 0 or first + count > self.rows then
    fail(2, "rows_view: rows [%d, %d) are outside [0, %d)", first, first + count, self.rows)
  end
  return derived(wrap(self.storage, { count, self.cols }, self._dt, self.offset + first * self.stride, self.stride), self)
end

-- Columns [first, first + count) of every row: a view with a row stride
-- larger than its width (non-contiguous rows).
function Tensor:cols_view(first, count)
  if #self._shape ~= 2 then fail(2, "cols_view: needs a 2-D tensor") end
  if first < 0 or count < 0 or first + count > self.cols then
    fail(2, "cols_view: columns [%d, %d) are outside [0, %d)", first, first + count, self.cols)
  end
  return derived(wrap(self.storage, { self.rows, count }, self._dt, self.offset + first, self.stride), self)
end

-- Copies into a new tensor. opts: dtype, device, stride (default: keep the
-- layout when the device changes, contiguous otherwise).
local function copy(src, dt, device, stride)
  local dst = M.empty(src:shape(), { dtype = dt.name, device = device, stride = #src._shape == 2 and stride or nil })
  local n = src:span_elems()
  if n == 0 then return dst end
  if src.device == "cpu" and device == "cpu" then
    C.gs_convert(dst:data(), dt.code, dst.stride, src:data(), src._dt.code, src.stride, src.rows, src.cols)
    return dst
  end
  -- Through the host: cuda buffers are moved whole (layout kept) with memcpy.
  local host_src = src
  if src.device == "cuda" then
    host_src = wrap(new_storage(n * src._dt.size, "cpu"), src:shape(), src._dt, 0, src.stride)
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
  if self.device ~= "cpu" or src.device ~= "cpu" then
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
  return "{" .. table.concat(t._shape, ", ") .. "}"
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
  local host = M.empty(shape, { dtype = opts.dtype, stride = opts.stride })
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

function M.full(shape, value, opts)
  opts = opts or {}
  local host = M.empty(shape, { dtype = opts.dtype, stride = opts.stride })
  host:fill(value)
  return host:to(check_device(opts.device))
end

function M.zeros(shape, opts) return M.empty(shape, opts) end
function M.ones(shape, opts) return M.full(shape, 1, opts) end

-- gs.arange(n) or gs.arange(start, stop[, step]), 1-D, stop excluded.
function M.arange(a, b, step, opts)
  if type(b) == "table" then opts, b = b, nil end
  if type(step) == "table" then opts, step = step, nil end
  local start, stop = a, b
  if stop == nil then start, stop = 0, a end
  step = step or 1
  if step == 0 then fail(2, "arange: step must not be 0") end
  local n = math.max(0, math.ceil((stop - start) / step))
  local t = M.empty({ n }, { dtype = (opts and opts.dtype) or "f32" })
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

local function random(shape, opts, dist, a, b)
  local host = M.empty(shape, { dtype = opts.dtype, stride = opts.stride })
  local seed = next_seed(opts)
  C.gs_fill_random(host:data(), host._dt.code, host.rows, host.cols, host.stride, dist,
    ffi.cast("uint64_t", seed), a, b)
  return host:to(check_device(opts.device))
end

-- gs.randn(shape, {mean, std, seed, dtype, device, stride})
function M.randn(shape, opts)
  opts = opts or {}
  return random(shape, opts, 1, opts.mean or 0, opts.std or 1)
end

-- gs.rand(shape, {low, high, ...}): uniform in [low, high).
function M.rand(shape, opts)
  opts = opts or {}
  return random(shape, opts, 0, opts.low or 0, opts.high or 1)
end

-- gs.randint(low, high, shape, opts): integers in [low, high), i64 default.
function M.randint(low, high, shape, opts)
  opts = opts or {}
  if type(low) ~= "number" or type(high) ~= "number" or high <= low then
    fail(2, "randint: needs low < high, got low = %s, high = %s", tostring(low), tostring(high))
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.dtype = o.dtype or "i64"
  return random(shape, o, 2, low, high)
end

Tensor.__tostring = function(t) return require("gradspec.tensor_print").format(t) end
Tensor.__len = function(t) return t:numel() end

return M

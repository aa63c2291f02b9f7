-- The f64 helpers a spec needs to state its expectations: arithmetic,
-- reductions, softmax and comparisons. Every result is a new f64 host tensor
-- that remembers the tensors it was computed from, so that asserting on a
-- derived value counts as asserting on its sources. Reductions return 0-D
-- tensors (as PyTorch does); :item() turns one into a Lua number.
local T = require("gradspec.tensor")
local ffi = require("ffi")

local Tensor = T.Tensor

local function fail(fmt, ...) error(string.format(fmt, ...), 3) end

-- A contiguous f64 host copy (or self when it already is one).
local function f64(t)
  if t.dtype == "f64" and t.device == "cpu" and t:is_contiguous() then return t end
  return t:to({ dtype = "f64", device = "cpu" }):contiguous()
end

-- A new f64 result. anchors: the f64 copies whose raw pointers the caller
-- reads; the result holds them so the GC cannot free them mid-loop.
local function result(shape, sources, anchors)
  local out = T.empty(shape, { dtype = "f64" })
  out._sources = sources
  out._anchors = anchors
  return out, out:ptr()
end

-- f64 copy and its pointer: the copy must be passed to result() as an anchor.
local function f64p(t)
  local c = f64(t)
  return c, c:ptr()
end

local function same_shape(a, b, what)
  if a.rows ~= b.rows or a.cols ~= b.cols then
    fail("%s: shapes differ: %s vs %s", what, T.shape_string(a), T.shape_string(b))
  end
end

-- Elementwise binary op against a tensor of the same shape, a one-element
-- tensor, or a number.
local function binary(name, fn)
  Tensor[name] = function(a, b)
    local pa_t, pa = f64p(a)
    local n = a:numel()
    local out, po = result(a:shape(), { a, T.is_tensor(b) and b or nil }, { pa_t })
    if type(b) == "number" then
      for i = 0, n - 1 do po[i] = fn(pa[i], b) end
    elseif T.is_tensor(b) then
      if b:numel() == 1 and n ~= 1 then
        local s = b:item()
        for i = 0, n - 1 do po[i] = fn(pa[i], s) end
      else
        same_shape(a, b, name)
        local pb_t, pb = f64p(b)
        out._anchors[2] = pb_t
        for i = 0, n - 1 do po[i] = fn(pa[i], pb[i]) end
      end
    else
      fail("%s: expected a tensor or a number, got %s", name, type(b))
    end
    return out
  end
end

binary("add", function(x, y) return x + y end)
binary("sub", function(x, y) return x - y end)
binary("mul", function(x, y) return x * y end)
binary("div", function(x, y) return x / y end)
binary("maximum", function(x, y) return (x ~= x or y ~= y) and 0 / 0 or math.max(x, y) end)
binary("minimum", function(x, y) return (x ~= x or y ~= y) and 0 / 0 or math.min(x, y) end)
-- Comparisons give 1 where true, 0 where false (NaN compares false).
binary("lt", function(x, y) return x < y and 1 or 0 end)
binary("le", function(x, y) return x <= y and 1 or 0 end)
binary("gt", function(x, y) return x > y and 1 or 0 end)
binary("ge", function(x, y) return x >= y and 1 or 0 end)
binary("eq", function(x, y) return x == y and 1 or 0 end)
binary("ne", function(x, y) return x ~= y and 1 or 0 end)

function Tensor:scale(s) return self:mul(s) end

-- Elementwise unary map; fn gets (value, row, col).
function Tensor:map(fn)
  local pa_t, pa = f64p(self)
  local out, po = result(self:shape(), { self }, { pa_t })
  local cols = self.cols
  for i = 0, self:numel() - 1 do po[i] = fn(pa[i], math.floor(i / cols), i % cols) end
  return out
end

-- fn gets the value alone: math.log(x, row) would take row as its base.
local function unary(name, fn)
  Tensor[name] = function(a) return a:map(function(x) return fn(x) end) end
end
unary("abs", math.abs)
unary("neg", function(x) return -x end)
unary("exp", math.exp)
unary("log", math.log)
unary("sqrt", math.sqrt)
unary("isnan", function(x) return x ~= x and 1 or 0 end)
unary("isinf", function(x) return (x == math.huge or x == -math.huge) and 1 or 0 end)
unary("isfinite", function(x) return (x == x and x ~= math.huge and x ~= -math.huge) and 1 or 0 end)

-- Reductions. Without dim: a 0-D tensor over every element. dim = 1: one
-- value per row (1-D, length rows). dim = 0: one value per column.
local function reduction(name, init, step, finish)
  Tensor[name] = function(a, dim)
    local pa_t, pa = f64p(a)
    local rows, cols = a.rows, a.cols
    if dim == nil then
      local acc = init
      for i = 0, rows * cols - 1 do acc = step(acc, pa[i]) end
      local out, po = result({}, { a }, { pa_t })
      po[0] = finish and finish(acc, rows * cols) or acc
      return out
    end
    if a:dim() ~= 2 then fail("%s: dim %s needs a 2-D tensor", name, tostring(dim)) end
    if dim == 1 then
      local out, po = result({ rows }, { a }, { pa_t })
      for r = 0, rows - 1 do
        local acc = init
        for c = 0, cols - 1 do acc = step(acc, pa[r * cols + c]) end
        po[r] = finish and finish(acc, cols) or acc
      end
      return out
    elseif dim == 0 then
      local out, po = result({ cols }, { a }, { pa_t })
      for c = 0, cols - 1 do
        local acc = init
        for r = 0, rows - 1 do acc = step(acc, pa[r * cols + c]) end
        po[c] = finish and finish(acc, rows) or acc
      end
      return out
    end
    fail("%s: dim must be 0 or 1, got %s", name, tostring(dim))
  end
end

-- max/min propagate NaN, like torch.max.
local function nanmax(acc, x) if x ~= x or acc ~= acc then return 0 / 0 end return x > acc and x or acc end
local function nanmin(acc, x) if x ~= x or acc ~= acc then return 0 / 0 end return x < acc and x or acc end
reduction("sum", 0, function(acc, x) return acc + x end)
reduction("mean", 0, function(acc, x) return acc + x end, function(acc, n) return acc / n end)
reduction("max", -math.huge, nanmax)
reduction("min", math.huge, nanmin)

-- Row-wise softmax and log_softmax in f64, shifted by the row max.
local function row_softmax(a, log)
  if a:dim() ~= 2 and a:dim() ~= 1 then fail("softmax: needs a 1-D or 2-D tensor") end
  local pa_t, pa = f64p(a)
  local out, po = result(a:shape(), { a }, { pa_t })
  local cols = a.cols
  for r = 0, a.rows - 1 do
    local base, m = r * cols, -math.huge
    for c = 0, cols - 1 do
      local x = pa[base + c]
      if x ~= x or x > m then m = x end
      if m ~= m then break end
    end
    local s = 0
    for c = 0, cols - 1 do s = s + math.exp(pa[base + c] - m) end
    -- (x - m) - log(s), not x - (m + log(s)): m + log(s) rounds away the
    -- low bits of log(s) when |m| is large.
    local logs = math.log(s)
    for c = 0, cols - 1 do
      local shifted = pa[base + c] - m
      po[base + c] = log and (shifted - logs) or (math.exp(shifted) / s)
    end
  end
  return out
end

function Tensor:softmax() return row_softmax(self, false) end
function Tensor:log_softmax() return row_softmax(self, true) end
function Tensor:logsumexp()
  local lsm = row_softmax(self, true)
  local pa_t, pa = f64p(self)
  local pl = lsm:ptr()
  local out, po = result({ self.rows }, { self }, { pa_t, lsm })
  for r = 0, self.rows - 1 do po[r] = pa[r * self.cols] - pl[r * self.cols] end
  return out
end

-- true when every element is non-zero (a comparison's mask, say).
function Tensor:all()
  local pa_t, pa = f64p(self)
  for i = 0, self:numel() - 1 do if pa[i] == 0 or pa[i] ~= pa[i] then return false end end
  return pa_t ~= nil -- keeps the copy alive across the loop
end

function Tensor:any()
  local pa_t, pa = f64p(self)
  for i = 0, self:numel() - 1 do if pa[i] ~= 0 and pa[i] == pa[i] then return pa_t ~= nil end end
  return false
end

-- Transposed copy of a 2-D tensor.
function Tensor:t()
  if self:dim() ~= 2 then fail("t: needs a 2-D tensor") end
  local pa_t, pa = f64p(self)
  local out, po = result({ self.cols, self.rows }, { self }, { pa_t })
  for r = 0, self.rows - 1 do
    for c = 0, self.cols - 1 do po[c * self.rows + r] = pa[r * self.cols + c] end
  end
  return out
end

-- f64 matrix product (rows x k) * (k x cols).
function Tensor:matmul(b)
  if self:dim() ~= 2 or b:dim() ~= 2 or self.cols ~= b.rows then
    fail("matmul: shapes %s and %s do not multiply", T.shape_string(self), T.shape_string(b))
  end
  local pa_t, pa = f64p(self)
  local pb_t, pb = f64p(b)
  local n, k, m = self.rows, self.cols, b.cols
  local out, po = result({ n, m }, { self, b }, { pa_t, pb_t })
  for i = 0, n - 1 do
    for p = 0, k - 1 do
      local x = pa[i * k + p]
      if x ~= 0 then
        for j = 0, m - 1 do po[i * m + j] = po[i * m + j] + x * pb[p * m + j] end
      end
    end
  end
  return out
end

function Tensor:dot(b)
  same_shape(self, b, "dot")
  local pa_t, pa = f64p(self)
  local pb_t, pb = f64p(b)
  local s = 0
  for i = 0, self:numel() - 1 do s = s + pa[i] * pb[i] end
  local out, po = result({}, { self, b }, { pa_t, pb_t })
  po[0] = s
  return out
end

-- Gathers one value per row: out[i] = self[i, index[i]] (0-based index).
function Tensor:gather_rows(index)
  if self:dim() ~= 2 or index:numel() ~= self.rows then
    fail("gather_rows: needs a 2-D tensor and one index per row")
  end
  local pa_t, pa = f64p(self)
  local pi_t, pi = f64p(index)
  local out, po = result({ self.rows }, { self }, { pa_t, pi_t })
  for r = 0, self.rows - 1 do
    local c = pi[r]
    if c < 0 or c >= self.cols then fail("gather_rows: index[%d] = %s is outside [0, %d)", r, tostring(c), self.cols) end
    po[r] = pa[r * self.cols + c]
  end
  return out
end

-- gs.one_hot(target, V): rows of zeros with a 1 at each 0-based target.
function T.one_hot(target, v)
  local pt_t, pt = f64p(target)
  local n = target:numel()
  local out, po = result({ n, v }, { target }, { pt_t })
  for r = 0, n - 1 do
    local c = pt[r]
    if c >= 0 and c < v then po[r * v + c] = 1 end
  end
  return out
end

return T

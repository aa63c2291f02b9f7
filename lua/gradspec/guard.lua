-- Guard bands around the output buffers handed to a user's kernel: each
-- output is a view into a larger buffer whose other bytes hold a known
-- pattern (a whole row before and after, and GAP elements past the end of
-- every row). After the call, a changed byte there means the kernel wrote
-- out of bounds; the message names the output, the row and how far.
local T = require("gradspec.tensor")
local gffi = require("gradspec.ffi")
local ffi = gffi.ffi

local M = {}

M.GAP = 16         -- guard elements past the end of each row
M.BYTE = 0xA5      -- the pattern; as f32 it reads -2.9e-16, as bf16 -2.9e-16

-- A fresh guarded set: s:empty(name, shape, dtype, device) gives outputs,
-- s:check() raises the first overrun found.
local Set = {}
Set.__index = Set

function M.new() return setmetatable({ outputs = {} }, Set) end

-- The buffer holding a view of `shape` (0-D, {n} or {n, v}), as a
-- {rows, cols} block: the view is rows [1, rows - 1) and columns [0, cols -
-- GAP) of it, so row 0, the last row and the last GAP columns are guard.
local function block(shape)
  if #shape == 2 then return shape[1], shape[2] end
  if #shape == 1 then return 1, shape[1] end
  return 1, 1
end

function Set:empty(name, shape, dtype, device)
  local rows, cols = block(shape)
  local host = T.empty({ rows + 2, cols + M.GAP }, { dtype = dtype })
  ffi.fill(host:data(), host:span_elems() * host._dt.size, M.BYTE)
  local base = device == "cuda" and host:to("cuda") or host
  local inner = base:rows_view(1, rows):cols_view(0, cols)
  local view
  if #shape == 2 then view = inner
  elseif #shape == 1 then view = inner:row(0)
  else view = inner:at(0, 0) end
  self.outputs[#self.outputs + 1] = { name = name, base = base, rows = rows, cols = cols, view = view, dim = #shape }
  return view
end

-- Where the first changed guard byte of one output lies, or nil.
local function overrun(o)
  local host = o.base.device == "cpu" and o.base or o.base:to("cpu")
  local p = ffi.cast("const uint8_t *", host:data())
  local size, stride = host._dt.size, host.stride
  local function changed(elem)
    for b = 0, size - 1 do
      if p[elem * size + b] ~= M.BYTE then return true end
    end
    return false
  end
  for c = 0, stride - 1 do
    if changed(c) then return "before the first element (guard row before the buffer)" end
  end
  for r = 1, o.rows do
    for c = o.cols, stride - 1 do
      if changed(r * stride + c) then
        local far = c - o.cols + 1
        local row = o.dim == 2 and string.format("row %d ", r - 1) or ""
        return string.format("%swritten %d element%s past its end (column %d of a row of %d)", row, far,
          far == 1 and "" or "s", c, o.cols)
      end
    end
  end
  for c = 0, stride - 1 do
    if changed((o.rows + 1) * stride + c) then
      return string.format("written past the end of the buffer (%d element%s after its last)", c + 1,
        c == 0 and "" or "s")
    end
  end
  return nil
end

-- Raises "backend mine, cross_entropy: out-of-bounds write to gradient: ..."
-- for the first output whose guard changed.
function Set:check(backend, op, level)
  for _, o in ipairs(self.outputs) do
    local where = overrun(o)
    if where then
      error(string.format("%s: backend %s wrote out of bounds: %s %s", op, backend, o.name, where), level + 1)
    end
  end
end

return M

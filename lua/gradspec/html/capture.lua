-- The comparisons of the running `it`, kept for the HTML report (gradspec run
-- --html). Off unless a report asks for it: assert.close, backends_agree and
-- gradcheck then pay one test of M.mode and nothing else. What is kept per
-- comparison has a fixed size whatever the tensor's (measure.lua), and an
-- `it` keeps at most MAX_PER_IT comparisons, failed ones first.
local serial = require("gradspec.serial")

local M = {}

-- nil: off; "failed": failed comparisons only; "all": passing ones too (--html-all).
M.mode = nil
M.MAX_PER_IT = 12

local kept, left_out, context = {}, 0, nil

function M.set_mode(mode)
  if mode ~= nil and mode ~= "failed" and mode ~= "all" then
    error("capture mode must be nil, \"failed\" or \"all\", got " .. tostring(mode), 2)
  end
  M.mode, kept, left_out, context = mode, {}, 0, nil
end

-- Starts a new `it`.
function M.begin()
  if M.mode then kept, left_out, context = {}, 0, nil end
end

-- What the caller of assert.close knows and assert.close does not: the op,
-- the backends, the target column of each row. Returns the previous context
-- so that the caller can put it back.
function M.set_context(ctx)
  local old = context
  context = ctx
  return old
end

-- The first frame outside the workbench: where the spec made the comparison.
local function call_site()
  for level = 3, 12 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    local src = info.short_src or ""
    if info.currentline and info.currentline > 0 and not src:find("gradspec/[%w_/]+%.lua$") and src ~= "[C]" then
      return string.format("%s:%d", src, info.currentline)
    end
  end
  return nil
end

-- Keeps a measured comparison (a flat record). When the list is full a
-- failed one takes the place of a passing one, else of the oldest failed
-- one: the failure that ends an it is its last comparison, and must stay.
local function keep(rec)
  left_out = left_out + (#kept < M.MAX_PER_IT and 0 or 1)
  if #kept < M.MAX_PER_IT then
    kept[#kept + 1] = rec
    return
  end
  if not rec.failed then return end
  local drop = 1
  for i = 1, #kept do
    if not kept[i].failed then drop = i; break end
  end
  table.remove(kept, drop)
  kept[#kept + 1] = rec
end

-- A comparison seen by assert.close or gradcheck. c: {kind, label, failed,
-- actual = f64 pointer, expected = f64 pointer (or nil), scalar = the
-- expected number when one value is compared with every element, n, rows,
-- cols, dim, rtol, atol, tiny, equal_nan, dtype (for ulps), adtype, edtype}.
function M.comparison(c)
  if not M.mode or (not c.failed and M.mode ~= "all") then return end
  c.where = call_site()
  if context then
    c.label = context.label or c.label
    c.target = context.target
    c.chunk = context.chunk
  end
  -- a report must never change what an assertion does: a failure to
  -- measure is kept as a note, not raised
  local ok, rec = pcall(require("gradspec.html.measure").measure, c)
  if not ok then
    rec = { kind = c.kind, label = c.label, where = c.where, failed = c.failed and true or false, n = c.n, bad = 0,
      measure_error = tostring(rec) }
  end
  keep(rec)
end

-- The comparisons of the `it` that just ran, each one line of text (they
-- travel from a child process in its results file), and how many were left
-- out over the cap. nil when off or when there were none.
function M.take()
  if not M.mode or (#kept == 0 and left_out == 0) then return nil, nil end
  local out = {}
  for i, rec in ipairs(kept) do out[i] = serial.encode(rec) end
  local n = left_out
  kept, left_out, context = {}, 0, nil
  return out, n > 0 and n or nil
end

return M

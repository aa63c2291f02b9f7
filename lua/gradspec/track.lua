-- Which op outputs a spec has asserted. Ops register what they return while
-- an `it` is running; assertions mark what they read (and everything it was
-- computed from). Reading a value any other way (printing, :get, :item) does
-- not count: only an assertion can mark a tensor.
local M = {}

local current = nil -- list of records for the running `it`, or nil

function M.begin()
  current = {}
end

-- Ends collection and returns the records of the finished `it`.
function M.finish()
  local records = current or {}
  current = nil
  return records
end

-- Where the spec called the op: the first stack frame outside lua/gradspec/.
local function caller()
  for level = 3, 30 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    local src = info.short_src or ""
    if info.currentline and info.currentline > 0 and not src:find("gradspec/[%w_]+%.lua$") then
      return src .. ":" .. info.currentline
    end
  end
  return "?"
end

-- kind: "gradient" (must be asserted), "value" (a primary result: warns
-- when unasserted) or "aux" (a side output: checked only when strict).
function M.record(t, op, what, kind)
  if not current then return t end
  local where = caller()
  -- One record per call site: a loop that calls an op 100 times is one report.
  local key = op .. "\0" .. what .. "\0" .. where
  local rec = current[key]
  if not rec then
    rec = { op = op, what = what, kind = kind, where = where, asserted = false, tensors = setmetatable({}, { __mode = "k" }) }
    current[key] = rec
    current[#current + 1] = rec
  end
  rec.calls = (rec.calls or 0) + 1
  t._track = rec
  return t
end

-- Marks t and everything it was derived from as asserted.
-- The named outputs of a loss op ({loss, result, lse, z_loss, grad}), each
-- recorded with what it is and how strictly it must be asserted.
local OUTPUT_KIND = { loss = "value", lse = "aux", z_loss = "aux", grad = "gradient", result = "value" }
local OUTPUT_WHAT = { loss = "loss", lse = "lse", z_loss = "z_loss", grad = "gradient", result = "result" }
function M.record_outputs(outs, op)
  for _, k in ipairs({ "loss", "result", "lse", "z_loss", "grad" }) do
    if outs[k] then M.record(outs[k], op, OUTPUT_WHAT[k], OUTPUT_KIND[k]) end
  end
end

function M.mark(t, seen)
  if type(t) ~= "table" then return end
  seen = seen or {}
  if seen[t] then return end
  seen[t] = true
  if t._track then t._track.asserted = true end
  if t._sources then
    for _, s in pairs(t._sources) do M.mark(s, seen) end
  end
end

function M.active() return current ~= nil end

-- Runs fn without recording: for checks (gradcheck) that consume the outputs
-- of the calls they make themselves.
function M.untracked(fn, ...)
  local saved = current
  current = nil
  local res = { pcall(fn, ...) }
  current = saved
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

return M

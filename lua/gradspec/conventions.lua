-- Each op's sign and range conventions, declared in one place, and
-- `gradspec conventions`, which checks every backend of every op against
-- them on seeded random and nasty inputs.
local T = require("gradspec.tensor_math")
local ops = require("gradspec.ops")
local A = require("gradspec.assert")
local track = require("gradspec.track")

local M = {}

local function i64(values) return T.tensor(values, { dtype = "i64" }) end

-- The inputs every convention is checked on: {name, logits, target}.
function M.inputs()
  local sets = {}
  local function add(name, x, t) sets[#sets + 1] = { name = name, logits = x, target = t } end
  add("random f32 16x257", T.randn({ 16, 257 }, { seed = 1, std = 3 }), T.randint(0, 257, { 16 }, { seed = 2 }))
  add("random bf16 8x1000", T.randn({ 8, 1000 }, { seed = 3, std = 4, dtype = "bf16" }), T.randint(0, 1000, { 8 }, { seed = 4 }))
  add("logits of +-1e4", T.tensor({ { 1e4, -1e4, 0, 5 }, { -1e4, 1e4, 1e4, -3 } }), i64({ 1, 2 }))
  local masked = T.randn({ 4, 9 }, { seed = 5 })
  for r = 0, 3 do masked:set(r, (r * 2 + 1) % 9, -math.huge) end
  add("masked vocabulary (-inf)", masked, i64({ 0, 2, 4, 6 }))
  add("near-certain predictions", T.tensor({ { 30, 0, 0 }, { 0, 0, 25 } }), i64({ 0, 2 }))
  add("V = 1", T.randn({ 3, 1 }, { seed = 6 }), i64({ 0, 0, 0 }))
  return sets
end

local function all_close(a, b, tol)
  local ok = pcall(A.close, a, b, tol)
  return ok
end

-- Runs an assertion; returns nil when it holds, else its message.
local function violated(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return nil end
  return (tostring(err):gsub("^[^\n]-: assert", "assert"))
end

-- The declared conventions. check(backend, inp) returns nil or what is wrong.
M.declared = {
  { op = "cross_entropy", name = "loss >= 0 on every row",
    check = function(b, inp)
      return violated(A.all, ops.cross_entropy(inp.logits, inp.target, { backend = b, reduction = "none" }), ">=0")
    end },
  { op = "cross_entropy", name = "gradient rows sum to 0",
    check = function(b, inp)
      local g = ops.cross_entropy_backward(inp.logits, inp.target, 1, { backend = b, reduction = "sum", grad_dtype = "f32" })
      return violated(A.close, g:sum(1), 0, { atol = 1e-4 })
    end },
  { op = "cross_entropy", name = "the target column is the only negative gradient entry",
    check = function(b, inp)
      local g = ops.cross_entropy_backward(inp.logits, inp.target, 1, { backend = b, reduction = "sum", grad_dtype = "f32" })
      local onehot = T.one_hot(inp.target, inp.logits.cols)
      return violated(A.all, g:mul(onehot), "<=0") or violated(A.all, g:mul(onehot:neg():add(1)), ">=0")
    end },
  { op = "log_probs", name = "log_probs <= 0 on every row",
    check = function(b, inp)
      local lp = ops.log_probs(inp.logits, inp.target, { backend = b })
      local why = violated(A.all, lp, "<=0")
      if why then
        local ce = ops.cross_entropy(inp.logits, inp.target, { backend = b, reduction = "none" })
        if all_close(lp, ce, { rtol = 1e-3, atol = 1e-3 }) then
          return "backend " .. b .. " returns +CE where -CE is declared (log_probs equals +cross_entropy on every row)"
        end
      end
      return why
    end },
  { op = "log_probs", name = "log_probs == -cross_entropy(reduction \"none\") per row",
    check = function(b, inp)
      local lp = ops.log_probs(inp.logits, inp.target, { backend = b })
      local ce = ops.cross_entropy(inp.logits, inp.target, { backend = b, reduction = "none" })
      local why = violated(A.close, lp, ce:neg(), { rtol = 1e-5, atol = 1e-5 })
      if why and all_close(lp, ce, { rtol = 1e-5, atol = 1e-5 }) then
        return "backend " .. b .. " returns +CE where -CE is declared"
      end
      return why
    end },
  { op = "log_probs_backward", name = "gradient: target column >= 0, the rest <= 0, rows sum to 0",
    check = function(b, inp)
      local g = ops.log_probs_backward(inp.logits, inp.target, 1, { backend = b, grad_dtype = "f32" })
      local onehot = T.one_hot(inp.target, inp.logits.cols)
      return violated(A.all, g:mul(onehot), ">=0") or violated(A.all, g:mul(onehot:neg():add(1)), "<=0")
        or violated(A.close, g:sum(1), 0, { atol = 1e-4 })
    end },
  { op = "entropy", name = "entropy in [0, log V] on every row",
    check = function(b, inp)
      local h = ops.entropy(inp.logits, { backend = b })
      local why = violated(A.in_range, h, -1e-5, math.log(inp.logits.cols) + 1e-5)
      if why and violated(A.all, h, "<=1e-5") == nil and violated(A.all, h, ">=0") ~= nil then
        return "backend " .. b .. " returns -entropy where entropy >= 0 is declared: " .. why
      end
      return why
    end },
  { op = "entropy_backward", name = "gradient rows sum to 0",
    check = function(b, inp)
      local g = ops.entropy_backward(inp.logits, 1, { backend = b, grad_dtype = "f32" })
      return violated(A.close, g:sum(1), 0, { atol = 1e-4 })
    end },
}

-- Checks every declared convention on every backend; returns rows of
-- {convention, {backend -> "ok" | "FAIL" | "skip"}} and the failures.
function M.check(backends)
  local sets = M.inputs()
  local rows, failures = {}, {}
  for _, conv in ipairs(M.declared) do
    local row = { conv = conv, cells = {} }
    for _, b in ipairs(backends) do
      local device = b == "cuda" and "cuda" or "cpu"
      local status = "ok"
      for _, inp in ipairs(sets) do
        local moved = { name = inp.name, logits = inp.logits:to(device), target = inp.target:to(device) }
        local ok, why = pcall(track.untracked, conv.check, b, moved)
        if not ok then why = "raised an error: " .. tostring(why) end
        if why then
          status = "FAIL"
          failures[#failures + 1] = { conv = conv, backend = b, input = inp.name, why = why }
        end
      end
      row.cells[b] = status
    end
    rows[#rows + 1] = row
  end
  return rows, failures
end

function M.main(args)
  local backends = { "ref", "cpu", "cuda" }
  local reason = ops.cuda_unavailable_reason()
  local rows, failures = M.check(reason and { "ref", "cpu" } or backends)
  local width = 0
  for _, r in ipairs(rows) do width = math.max(width, #(r.conv.op .. ": " .. r.conv.name)) end
  io.stdout:write(string.format("%-" .. width .. "s  %-5s %-5s %s\n", "convention", "ref", "cpu", "cuda"))
  for _, r in ipairs(rows) do
    io.stdout:write(string.format("%-" .. width .. "s  %-5s %-5s %s\n", r.conv.op .. ": " .. r.conv.name,
      r.cells.ref, r.cells.cpu, r.cells.cuda or "skip"))
  end
  if reason then io.stdout:write("\ncuda skipped: ", reason, "\n") end
  io.stdout:write(string.format("\nchecked on %d inputs: ", #M.inputs()))
  local names = {}
  for _, inp in ipairs(M.inputs()) do names[#names + 1] = inp.name end
  io.stdout:write(table.concat(names, ", "), "\n")
  if #failures > 0 then
    io.stdout:write("\nViolations:\n")
    for _, f in ipairs(failures) do
      io.stdout:write(string.format("  %s: %s [backend %s, input %s]\n    %s\n", f.conv.op, f.conv.name, f.backend,
        f.input, (f.why:gsub("\n", "\n    "))))
    end
    io.stdout:write(string.format("\n%d violation(s)\n", #failures))
    return 1
  end
  io.stdout:write("\nevery backend keeps every declared convention\n")
  return 0
end

return M

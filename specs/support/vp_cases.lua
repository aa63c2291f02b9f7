-- Shared by the vocab-parallel specs: shards (gradspec.vocab_shards, which
-- the benchmark uses too), inputs with nasty rows, every op of the family
-- on one option table, the option sets, and the check that a sharded run
-- equals the unsharded op.
local gs = require("gradspec")
local shards = require("gradspec.vocab_shards")
local assert = gs.assert

local M = {}

M.shards = shards.shards

function M.copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end

-- Row 0 has its max tied across the first shard boundary, row 1 is
-- confident, row 2 has -inf logits, row 3 is ignored under ignore_index 3,
-- row 4 is confident in its last column but two. The cpu kernel's vector
-- passes take 2048 columns at a time: where V allows, row 5 starts with
-- 2100 columns of -inf (a first chunk of nothing else).
function M.inputs(N, V, dtype)
  local x, t = shards.inputs(N, V, "f64")
  x:set(0, 0, 4)
  x:set(0, V - 1, 4)
  x:set(1, 5, 45)
  x:set(2, 1, -math.huge)
  x:set(2, V - 2, -math.huge)
  t:set(1, 5)
  t:set(3, 3)
  if N > 4 then
    x:set(4, V - 3, 45)
    t:set(4, V - 3)
  end
  if N > 5 and V > 2100 then
    for j = 0, 2099 do x:set(5, j, -math.huge) end
  end
  return x:to(dtype), t
end

-- Every op's outputs for one option table: the fused forward (loss, lse,
-- z_loss, grad), the backward, log_probs and entropy with their backwards.
function M.all_ops(x, t, o, go)
  local out = {}
  local ce_o = M.copy(o)
  ce_o.grad = true
  out.loss, out.aux = gs.cross_entropy(x, t, ce_o)
  out.aux.backend = nil
  local bo = M.copy(o)
  bo.grad_output = nil
  out.ce_bwd = gs.cross_entropy_backward(x, t, go or 1, bo)
  local lo = { backend = o.backend, logit_scale = o.logit_scale, softcap = o.softcap, ignore_index = o.ignore_index,
    comm = o.comm, vocab_start = o.vocab_start }
  out.lp = gs.log_probs(x, t, lo)
  out.lp_bwd = gs.log_probs_backward(x, t, go or 1, lo)
  local eo = { backend = o.backend, logit_scale = o.logit_scale, softcap = o.softcap, comm = o.comm,
    vocab_start = o.vocab_start }
  out.ent = gs.entropy(x, eo)
  out.ent_bwd = gs.entropy_backward(x, go or 1, eo)
  return out
end

-- The option sets every op is run with.
M.option_sets = {
  { name = "defaults", opts = {} },
  { name = "sum", opts = { reduction = "sum" } },
  { name = "none with per-row grad_output", opts = { reduction = "none" }, per_row_go = true },
  { name = "weight and label smoothing", opts = { label_smoothing = 0.2 }, weight = true },
  { name = "z-loss, grad_output 0.7", opts = { lse_square_scale = 0.01, reduction = "mean" }, go = 0.7 },
  { name = "softcap and logit_scale", opts = { softcap = 3, logit_scale = 1.7 } },
  { name = "negative logit_scale, ignore_index 3", opts = { logit_scale = -0.8, ignore_index = 3 } },
  { name = "everything at once", opts = { label_smoothing = 0.1, lse_square_scale = 1e-3, softcap = 8,
    logit_scale = 1.2, ignore_index = 3, reduction = "sum" }, weight = true },
}

-- NaN must sit where the unsharded op has it: under a negative logit_scale
-- row 2's -inf logits become +inf, which makes the row NaN.
M.tol = {
  ref = { rtol = 1e-11, atol = 1e-12, equal_nan = true },
  cpu = { rtol = 2e-5, atol = 2e-6, equal_nan = true },
  cuda = { rtol = 1e-4, atol = 1e-5, equal_nan = true },
}

-- c: backend (of the local op), dtype, R, set, comm ("cpu" or "nccl"),
-- expect (the backend of the unsharded op run here; default c.backend),
-- N, V. Every rank's outputs are compared with the unsharded op's.
function M.check(c)
  local N, V = c.N or 6, c.V or 37
  local x, t = M.inputs(N, V, c.dtype)
  local o = M.copy(c.set.opts)
  local real = (c.backend == "ref") and "f64" or "f32"
  local w = c.set.weight and gs.rand({ V }, { dtype = "f32" }) or nil
  local go = c.set.per_row_go and gs.randn({ N }, { dtype = real }) or c.set.go
  local full_o = M.copy(o)
  full_o.backend = c.expect or c.backend
  full_o.weight = w
  local go_full = go
  if gs.is_tensor(go) then go_full = go:to((c.expect or c.backend) == "ref" and "f64" or "f32") end
  full_o.grad_output = go_full
  local full = M.all_ops(x, t, full_o, go_full)
  local parts = shards.shards(V, c.R)
  local device = c.backend == "cuda" and "cuda" or "cpu"
  local got = gs.dist.run(c.R, function(comm)
    local p = parts[comm.rank]
    local mine = shards.rank_opts(o, comm, p)
    mine.backend = c.backend
    if w then
      local slice = {}
      for j = p.start, p.start + p.width - 1 do slice[#slice + 1] = w:get(j) end
      mine.weight = gs.tensor(slice, { dtype = "f32" }):to(device)
    end
    local g = gs.is_tensor(go) and go:to(device) or go
    mine.grad_output = g
    return M.all_ops(shards.columns(x, p, device), t:to(device), mine, g)
  end, { timeout = 60, backend = c.comm or "cpu" })
  local tl = M.tol[c.backend]
  if c.dtype == "bf16" then tl = { equal_nan = true } end -- the dtype's own tolerance
  for r = 0, c.R - 1 do
    local g, p = got[r + 1], parts[r]
    local function slice(full_grad) return full_grad:cols_view(p.start, p.width) end
    assert.close(g.loss, full.loss, tl)
    assert.close(g.aux.lse, full.aux.lse, tl)
    assert.close(g.aux.z_loss, full.aux.z_loss, tl)
    assert.close(g.aux.grad, slice(full.aux.grad), tl)
    assert.close(g.ce_bwd, slice(full.ce_bwd), tl)
    assert.close(g.lp, full.lp, tl)
    assert.close(g.lp_bwd, slice(full.lp_bwd), tl)
    assert.close(g.ent, full.ent, tl)
    assert.close(g.ent_bwd, slice(full.ent_bwd), tl)
  end
end

-- Every option set through M.check; a failure names its set.
function M.check_sets(c, sets)
  for _, set in ipairs(sets or M.option_sets) do
    local cc = M.copy(c)
    cc.set = set
    local ok, e = pcall(M.check, cc)
    if not ok then error(set.name .. ": " .. tostring(e), 0) end
  end
end

return M

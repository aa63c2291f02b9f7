-- The cross-entropy family, described once: for each op, its options and
-- their defaults, how it is called and what it returns, its built-in C entry
-- point (kernels/cross_entropy.h: ENTRY_ref, ENTRY_cpu, ENTRY_cuda) and the
-- sign and range conventions it declares. ops.lua (options, dispatch),
-- backend.lua (entry points), agree.lua (outputs) and conventions.lua read
-- it: an op of the family is one entry here. The math is docs/losses.md.
local T = require("gradspec.tensor_math")
local A = require("gradspec.assert")

local M = {}

-- Options every op takes, and those of cross_entropy and its backward.
local common = {
  backend = false, threads = 0, logit_scale = 1, softcap = 0, grad_dtype = false,
}
local ce_only = {
  reduction = "mean", ignore_index = -100, weight = false, label_smoothing = 0,
  lse_square_scale = 0,
}

local function ops() return require("gradspec.ops") end

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

-- The cross-entropy gradient (reduction sum) from the backward op, or from
-- the fused forward where the backend has no backward op.
local function ce_grad(b, inp)
  local opts = { backend = b, reduction = "sum", grad_dtype = "f32" }
  if require("gradspec.backend").get(b).ops.cross_entropy_backward then
    return ops().cross_entropy_backward(inp.logits, inp.target, 1, opts)
  end
  opts.grad = true
  local _, aux = ops().cross_entropy(inp.logits, inp.target, opts)
  return aux.grad
end

-- shape: "forward" returns {loss, lse, z_loss[, grad]}, "per_row" {result},
-- "backward" {grad}. target: whether the op takes one. check(backend, inp)
-- of a convention returns nil, or what is wrong.
M.ops = {
  cross_entropy = {
    shape = "forward", target = true, entry = "gs_ce_forward", ce_options = true,
    options = { grad = false, inplace = false, grad_output = false },
    conventions = {
      { name = "loss >= 0 on every row",
        check = function(b, inp)
          return violated(A.all, ops().cross_entropy(inp.logits, inp.target, { backend = b, reduction = "none" }), ">=0")
        end },
      { name = "gradient rows sum to 0",
        check = function(b, inp)
          local g = ce_grad(b, inp)
          return violated(A.close, g:sum(1), 0, { atol = 1e-4 })
        end },
      { name = "the target column is the only negative gradient entry",
        check = function(b, inp)
          local g = ce_grad(b, inp)
          local onehot = T.one_hot(inp.target, inp.logits.cols)
          return violated(A.all, g:mul(onehot), "<=0") or violated(A.all, g:mul(onehot:neg():add(1)), ">=0")
        end },
    },
  },
  cross_entropy_backward = {
    shape = "backward", target = true, entry = "gs_ce_backward", ce_options = true,
    options = {},
  },
  log_probs = {
    shape = "per_row", target = true, entry = "gs_log_probs_forward", ce_options = false,
    options = { ignore_index = -100 },
    conventions = {
      { name = "log_probs <= 0 on every row",
        check = function(b, inp)
          local lp = ops().log_probs(inp.logits, inp.target, { backend = b })
          local why = violated(A.all, lp, "<=0")
          if why then
            local ce = ops().cross_entropy(inp.logits, inp.target, { backend = b, reduction = "none" })
            if all_close(lp, ce, { rtol = 1e-3, atol = 1e-3 }) then
              return "backend " .. b .. " returns +CE where -CE is declared (log_probs equals +cross_entropy on every row)"
            end
          end
          return why
        end },
      { name = "log_probs == -cross_entropy(reduction \"none\") per row",
        check = function(b, inp)
          local lp = ops().log_probs(inp.logits, inp.target, { backend = b })
          local ce = ops().cross_entropy(inp.logits, inp.target, { backend = b, reduction = "none" })
          local why = violated(A.close, lp, ce:neg(), { rtol = 1e-5, atol = 1e-5 })
          if why and all_close(lp, ce, { rtol = 1e-5, atol = 1e-5 }) then
            return "backend " .. b .. " returns +CE where -CE is declared"
          end
          return why
        end },
    },
  },
  log_probs_backward = {
    shape = "backward", target = true, entry = "gs_log_probs_backward", ce_options = false,
    options = { ignore_index = -100 },
    conventions = {
      { name = "gradient: target column >= 0, the rest <= 0, rows sum to 0",
        check = function(b, inp)
          local g = ops().log_probs_backward(inp.logits, inp.target, 1, { backend = b, grad_dtype = "f32" })
          local onehot = T.one_hot(inp.target, inp.logits.cols)
          return violated(A.all, g:mul(onehot), ">=0") or violated(A.all, g:mul(onehot:neg():add(1)), "<=0")
            or violated(A.close, g:sum(1), 0, { atol = 1e-4 })
        end },
    },
  },
  entropy = {
    shape = "per_row", target = false, entry = "gs_entropy_forward", ce_options = false,
    options = {},
    conventions = {
      { name = "entropy in [0, log V] on every row",
        check = function(b, inp)
          local h = ops().entropy(inp.logits, { backend = b })
          local why = violated(A.in_range, h, -1e-5, math.log(inp.logits.cols) + 1e-5)
          if why and violated(A.all, h, "<=1e-5") == nil and violated(A.all, h, ">=0") ~= nil then
            return "backend " .. b .. " returns -entropy where entropy >= 0 is declared: " .. why
          end
          return why
        end },
    },
  },
  entropy_backward = {
    shape = "backward", target = false, entry = "gs_entropy_backward", ce_options = false,
    options = {},
    conventions = {
      { name = "gradient rows sum to 0",
        check = function(b, inp)
          local g = ops().entropy_backward(inp.logits, 1, { backend = b, grad_dtype = "f32" })
          return violated(A.close, g:sum(1), 0, { atol = 1e-4 })
        end },
    },
  },
}
M.order = { "cross_entropy", "cross_entropy_backward", "log_probs", "log_probs_backward", "entropy", "entropy_backward" }

-- Each op's full option table (name -> default).
for _, d in pairs(M.ops) do
  for k, v in pairs(common) do d.options[k] = v end
  if d.ce_options then
    for k, v in pairs(ce_only) do d.options[k] = v end
  end
end

return M

-- The linear cross entropy's oracle, shared by its specs: logits h W^T (+ b)
-- in f64, optionally rounded (chunk_dtype), the reference cross entropy of
-- them and its backward G, and the three projections in f64: dh = G W,
-- dW = G^T h, db = sum_i G_i. Untracked: it is the expectation, not a
-- result under test.
local gs = require("gradspec")
local track = require("gradspec.track")

local M = {}

-- The cross-entropy options the oracle hands to the reference.
M.CE_OPTIONS = { "reduction", "ignore_index", "weight", "label_smoothing", "logit_scale", "softcap",
  "lse_square_scale" }

-- round: nil, or a function of one f64 logit (after the bias) that gives
-- the logit the loss is taken of.
function M.expected(h, W, t, opts, grad_output, round)
  return track.untracked(function()
    local h64, W64 = h:to({ dtype = "f64", device = "cpu" }), W:to({ dtype = "f64", device = "cpu" })
    local x = h64:matmul(W64:t())
    local b = opts.bias and opts.bias:to("cpu"):totable()
    if b or round then
      x = x:map(function(v, _, c)
        if b then v = v + b[c + 1] end
        return round and round(v) or v
      end)
    end
    local o = { backend = "ref" }
    for _, k in ipairs(M.CE_OPTIONS) do o[k] = opts[k] end
    if o.weight then o.weight = o.weight:to("cpu") end
    local target = t:to("cpu")
    if type(grad_output) == "table" then grad_output = grad_output:to({ dtype = "f64", device = "cpu" }) end
    local loss, aux = gs.cross_entropy(x, target, o)
    local G = gs.cross_entropy_backward(x, target, grad_output or 1, o)
    return { loss = loss, lse = aux.lse, z_loss = aux.z_loss, dh = G:matmul(W64), dW = G:t():matmul(h64),
      db = G:sum(0) }
  end)
end

return M

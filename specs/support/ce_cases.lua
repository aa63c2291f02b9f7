-- Shared by the cross-entropy spec files: option cases, shapes and inputs.
local gs = require("gradspec")

local M = {}

function M.i64(values) return gs.tensor(values, { dtype = "i64" }) end

-- The options alone and in combination; weights are drawn per shape.
M.option_cases = {
  { name = "defaults (mean)", opts = {} },
  { name = "sum", opts = { reduction = "sum" } },
  { name = "none", opts = { reduction = "none" } },
  { name = "weight", opts = { weight = true } },
  { name = "label_smoothing", opts = { label_smoothing = 0.1 } },
  { name = "weight + label_smoothing + mean", opts = { weight = true, label_smoothing = 0.2 } },
  { name = "logit_scale", opts = { logit_scale = 0.7 } },
  { name = "softcap", opts = { softcap = 3 } },
  { name = "z-loss", opts = { lse_square_scale = 1e-2 } },
  { name = "ignore_index", opts = { ignore_index = 1 } },
  { name = "everything, none", opts = { reduction = "none", weight = true, label_smoothing = 0.1,
    logit_scale = 1.3, softcap = 4, lse_square_scale = 1e-3, ignore_index = 1 } },
  { name = "everything, mean", opts = { weight = true, label_smoothing = 0.05, logit_scale = 0.9,
    softcap = 6, lse_square_scale = 1e-4, ignore_index = 1 } },
}

M.shapes = {
  { n = 5, v = 1 },
  { n = 3, v = 9 },       -- not a multiple of the vector width
  { n = 7, v = 33 },
  { n = 16, v = 1000 },
  { n = 0, v = 10 },
  { n = 6, v = 37, stride = 50 }, -- non-contiguous rows
  -- wider than two chunks of the fast CPU kernel: its fused loop, and each
  -- row's gradient written during the next row's pass, in several chunks
  { n = 4, v = 2 * gs.cpu_chunk + 452 },
  { n = 3, v = 2 * gs.cpu_chunk + 9, stride = 2 * gs.cpu_chunk + 16 },
}

-- Builds inputs for one shape; targets include the ignore_index (-100) and,
-- for cases that set ignore_index = 1, class 1.
function M.make_inputs(shape, dtype, opts, seed)
  local x = gs.randn({ shape.n, shape.v }, { seed = seed, std = 3, dtype = dtype, stride = shape.stride })
  local t = gs.randint(0, shape.v, { shape.n }, { seed = seed + 1 })
  if shape.n > 2 then t:set(1, opts.ignore_index or -100) end
  if shape.n > 4 and shape.v > 1 then t:set(4, 1) end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.weight then o.weight = gs.rand({ shape.v }, { seed = seed + 2, low = 0.5, high = 2 }) end
  return x, t, o
end

return M

-- What both linear cross-entropy spec files draw beside h and W: the
-- targets and the options.
local gs = require("gradspec")

local M = {}

-- Targets of shape.n rows (seed + 2) with row 1 ignored (opts.ignore_index,
-- or -100) and class 1 in row 4, for the ignore_index = 1 cases; and a copy
-- of opts in which weight = true is drawn (seed + 3) and bias = true is
-- draw_bias(seed + 4).
function M.targets_and_options(shape, opts, seed, draw_bias)
  local t = gs.randint(0, shape.v, { shape.n }, { seed = seed + 2 })
  if shape.n > 2 then t:set(1, opts.ignore_index or -100) end
  if shape.n > 4 and shape.v > 1 then t:set(4, 1) end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.weight == true then o.weight = gs.rand({ shape.v }, { seed = seed + 3, low = 0.5, high = 2 }) end
  if o.bias == true then o.bias = draw_bias(seed + 4) end
  return t, o
end

return M

-- gs.gradcheck: an analytic gradient against central finite differences in
-- f64. Small inputs get the full check (every element); big ones get random
-- directions: (f(x + h v) - f(x - h v)) / 2h against <grad, v>, which checks
-- a 128k-wide row with a few dozen forward calls.
local T = require("gradspec.tensor_math")
local A = require("gradspec.assert")
local track = require("gradspec.track")
local capture = require("gradspec.html.capture")

local M = {}

-- Every option with the rule its value must pass (op_args.lua's rules): a
-- tolerance given as a string or a NaN step must fail here, not turn every
-- comparison false or true.
local args = require("gradspec.op_args")
local rule = args.rules
local known = {
  mode = function(key, v)
    if v ~= "auto" and v ~= "full" and v ~= "directions" then
      return string.format('mode must be "auto", "full" or "directions", got %s', args.value_text(v))
    end
  end,
  eps = rule.range(function(x) return x > 0 and x - x == 0 end, "must be finite and > 0"),
  rtol = rule.range(function(x) return x >= 0 and x - x == 0 end, "must be finite and >= 0"),
  atol = rule.range(function(x) return x >= 0 and x - x == 0 end, "must be finite and >= 0"),
  directions = rule.integer(1, 2 ^ 31, "must be >= 1"),
  seed = rule.integer(-2 ^ 53, 2 ^ 53),
  full_limit = rule.integer(0, 2 ^ 53, "must be >= 0"),
  msg = function(key, v)
    if type(v) ~= "string" then
      return string.format("%s = %s is a %s, expected a string", key, args.value_text(v), type(v))
    end
  end,
}

local function scalar(v, what)
  if type(v) == "number" then return v end
  if T.is_tensor(v) and v:numel() == 1 then return v:to({ dtype = "f64", device = "cpu" }):contiguous():ptr()[0] end
  error(string.format("gradcheck: %s must return a number or a one-element tensor, got %s", what, tostring(v)), 4)
end

local function fmt(x) return string.format("%.10g", x) end

-- f(x) -> scalar; x: tensor (any dtype; perturbed as an f64 copy); grad: the
-- analytic gradient of f at x (a tensor shaped like x, or a function of x).
-- opts: mode "auto"|"full"|"directions", eps (relative step, 1e-6), rtol
-- (1e-5), atol (1e-7), directions (16), seed, full_limit (4096 elements).
function M.gradcheck(f, x, grad, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("gradcheck: opts must be a table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not known[k] then error("gradcheck: unknown option '" .. tostring(k) .. "'", 2) end
  end
  for k, v in pairs(opts) do
    local why = known[k](k, v)
    if why then error("gradcheck: " .. why, 2) end
  end
  A.count_one()
  if type(f) ~= "function" then error("gradcheck: f must be a function", 2) end
  if not T.is_tensor(x) then error("gradcheck: x must be a tensor", 2) end
  local x64 = x:to({ dtype = "f64", device = "cpu" }):contiguous():clone()
  if type(grad) == "function" then grad = grad(x64) end
  if not T.is_tensor(grad) or grad:numel() ~= x:numel() then
    error("gradcheck: grad must be a tensor with as many elements as x", 2)
  end
  track.mark(grad)
  local g = grad:to({ dtype = "f64", device = "cpu" }):contiguous()
  local gp = g:ptr()
  local p = x64:ptr()
  local n = x64:numel()
  local eps, rtol, atol = opts.eps or 1e-6, opts.rtol or 1e-5, opts.atol or 1e-7
  local mode = opts.mode or "auto"
  if mode == "auto" then mode = n <= (opts.full_limit or 4096) and "full" or "directions" end

  local function diff(apply, h)
    apply(h)
    local up = scalar(track.untracked(f, x64), "f")
    apply(-2 * h)
    local down = scalar(track.untracked(f, x64), "f")
    apply(h)
    return (up - down) / (2 * h)
  end

  local worst = nil
  -- for gradspec run --html: every finite difference and what it was compared with
  local seen_fd, seen_got = capture.mode and {}, capture.mode and {}
  local function consider(where, expected, got, h)
    if seen_fd then
      local k = seen_fd.n or 0 -- 0-based, as measure.lua reads a pointer
      seen_fd[k], seen_got[k], seen_fd.n = expected, got, k + 1
    end
    local err = math.abs(expected - got)
    if err ~= err then err = math.huge end
    local ok = err <= atol + rtol * math.abs(expected)
    if not ok and (worst == nil or err > worst.err) then
      worst = { where = where, expected = expected, got = got, err = err, h = h }
    end
  end

  local seed
  if mode == "full" then
    for k = 0, n - 1 do
      local x0 = p[k]
      local h = eps * math.max(1, math.abs(x0))
      local fd = diff(function(d) p[k] = p[k] + d end, h)
      p[k] = x0 -- undo rounding drift of the three steps
      local where = x64:dim() == 2 and string.format("element [%d, %d]", math.floor(k / x64.cols), k % x64.cols)
        or string.format("element [%d]", k)
      consider(where, fd, gp[k], h)
    end
  elseif mode == "directions" then
    seed = opts.seed or (T.get_seed() * 7919 + 17)
    local scale = 1
    for k = 0, n - 1 do scale = math.max(scale, math.abs(p[k])) end
    local h = eps * scale
    local saved = x64:clone()
    local sp = saved:ptr()
    for d = 1, opts.directions or 16 do
      local v = T.randn(x64:shape(), { seed = seed + d, dtype = "f64" }):contiguous()
      local vp = v:ptr()
      local dot = 0
      for k = 0, n - 1 do dot = dot + gp[k] * vp[k] end
      local fd = diff(function(step) for k = 0, n - 1 do p[k] = p[k] + step * vp[k] end end, h)
      for k = 0, n - 1 do p[k] = sp[k] end
      consider(string.format("direction %d (seed %d)", d, seed + d), fd, dot, h)
    end
  else
    error("gradcheck: mode must be \"auto\", \"full\" or \"directions\", got " .. tostring(mode), 2)
  end

  if seen_fd then
    local full = mode == "full"
    capture.comparison({ kind = "gradcheck", label = opts.msg or ("gradcheck (" .. mode .. " mode)"), failed = worst ~= nil,
      actual = seen_got, expected = seen_fd, n = seen_fd.n or 0, dim = full and x64:dim() or 1,
      rows = full and x64.rows or 1, cols = full and x64.cols or (seen_fd.n or 0), rtol = rtol, atol = atol,
      adtype = grad.dtype, edtype = "f64", unit = not full and "direction" or nil,
      actual_name = full and "gradient" or "<gradient, v>",
      expected_name = full and "finite differences" or "finite differences along v" })
  end
  if worst then
    local lines = {
      string.format("gradcheck: the gradient disagrees with central finite differences (%s mode, rtol=%g, atol=%g)", mode, rtol, atol),
      string.format("  worst at %s: finite differences %s, gradient %s (abs err %s), step %s",
        worst.where, fmt(worst.expected), fmt(worst.got), fmt(worst.err), fmt(worst.h)),
    }
    if seed then lines[#lines + 1] = string.format("  reproduce with opts.seed = %d", seed) end
    if opts.msg then table.insert(lines, 1, opts.msg) end
    error(table.concat(lines, "\n"), 2)
  end
  return true
end

return M

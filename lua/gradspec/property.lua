-- Property-based testing: gs.property(name, generator, check, {runs, seed}).
--
-- A generator draws a case from `d`, a source of choices; check(case) raises
-- or returns false when the property does not hold. Every choice the source
-- makes is recorded as a non-negative integer on a tape, and every draw maps
-- a smaller integer to a simpler value (0 is the simplest: the lower end of a
-- choice list, the value closest to 0 of a range, an ordinary float rather
-- than a nasty one, an option left at its default). Shrinking edits the tape
-- (zeroing blocks, lowering entries, deleting entries) and replays the
-- generator on it, keeping any tape that is shortlex-smaller and still fails:
-- smaller shapes, fewer options and values closer to 0 fall out of that
-- without a shrinker per type. This is the idea of Hypothesis' choice
-- sequences; the tape is replayed by the very generator that drew it, so
-- every shrunk case is one the generator could have produced.
local gffi = require("gradspec.ffi")
local bit = require("bit")
local T = require("gradspec.tensor")
local A = require("gradspec.assert")
local dtypes = require("gradspec.dtype")
local ffi, C = gffi.ffi, gffi.C

local P = {}

-- Floats that break kernels: overflow, underflow, signed zeros, non-finite.
P.NASTY = { 0, -0.0, 1, -1, 1e4, -1e4, 1 / 0, -1 / 0, 0 / 0, 1e-30, -1e-30,
  1.401298464324817e-45, 5.960464477539063e-08, 65504, 3.4028234663852886e38 }

-- splitmix64: a small seeded generator, identical on every machine.
local Rng = {}
Rng.__index = Rng

local function new_rng(seed)
  local s = math.floor(tonumber(seed) or 0) % 2 ^ 53
  return setmetatable({ state = ffi.new("uint64_t", s) + 0x9E3779B97F4A7C15ULL }, Rng)
end

function Rng:next()
  self.state = self.state + 0x9E3779B97F4A7C15ULL
  local z = self.state
  z = bit.bxor(z, bit.rshift(z, 30)) * 0xBF58476D1CE4E5B9ULL
  z = bit.bxor(z, bit.rshift(z, 27)) * 0x94D049BB133111EBULL
  return bit.bxor(z, bit.rshift(z, 31))
end

-- Uniform in [0, 1).
function Rng:uniform() return tonumber(bit.rshift(self:next(), 11)) * 2 ^ -53 end

-- Uniform integer in [0, n).
function Rng:below(n) return math.floor(self:uniform() * n) end

-- Raised to abandon a case: d:assume(false), or a replayed tape that asks
-- for more draws than allowed.
local REJECT = setmetatable({}, { __tostring = function() return "case rejected" end })

-- The source of choices a generator draws from ---------------------------------

local Source = {}
Source.__index = Source

local function new_source(tape, rng, max_draws)
  local spans = { groups = {} }
  return setmetatable({ tape = tape, rng = rng, record = {}, spans = spans, max_draws = max_draws or 100000 }, Source)
end

-- Spans say which tape entries one int or float draw used, so that the
-- shrinker can delete a whole value or move mass between two of them.
local function add_span(src, kind, first, extra)
  extra = extra or {}
  extra.kind, extra.first, extra.last = kind, first, #src.record
  src.spans[#src.spans + 1] = extra
end

-- One tape entry in [0, max]. Replaying, it comes from the tape (clamped, so
-- an edited tape is always valid); past the tape's end it is 0; generating,
-- sample(rng) picks it.
function Source:draw(max, sample)
  local i = #self.record + 1
  if i > self.max_draws then error(REJECT, 0) end
  local v
  if i <= #self.tape then
    v = math.min(self.tape[i], max)
  elseif self.rng then
    v = sample and sample(self.rng) or self.rng:below(max + 1)
  else
    v = 0
  end
  self.record[i] = v
  return v
end

-- Groups: the tape entries of one compound value (a tensor, an option's
-- value), kept in spans.groups so that the shrinker can delete a value
-- whole together with the flag that asked for it.
function Source:group_start() return #self.record + 1 end

function Source:group_end(first)
  if #self.record >= first then
    local g = self.spans.groups
    g[#g + 1] = { kind = "group", first = first, last = #self.record }
  end
end

function Source:assume(cond)
  if not cond then error(REJECT, 0) end
  return true
end

-- Integers are laid out outward from o, the value of [lo, hi] closest to 0:
-- tape 0, 1, 2, 3, 4 -> o, o+1, o-1, o+2, o-2, ..., then the longer side.
local function int_origin(lo, hi)
  if lo > 0 then return lo end
  if hi < 0 then return hi end
  return 0
end

local function int_from_tape(k, lo, hi)
  local o = int_origin(lo, hi)
  local up, down = hi - o, o - lo
  local m = math.min(up, down)
  if k <= 2 * m then
    if k == 0 then return o end
    if k % 2 == 1 then return o + (k + 1) / 2 end
    return o - k / 2
  end
  local extra = k - 2 * m
  if up > down then return o + m + extra end
  return o - m - extra
end

local function int_to_tape(x, lo, hi)
  local o = int_origin(lo, hi)
  local up, down = hi - o, o - lo
  local m = math.min(up, down)
  local d = x - o
  if math.abs(d) <= m then
    if d == 0 then return 0 end
    if d > 0 then return 2 * d - 1 end
    return -2 * d
  end
  return 2 * m + math.abs(d) - m
end

local function check_int_range(lo, hi)
  if type(lo) ~= "number" or type(hi) ~= "number" or lo ~= math.floor(lo) or hi ~= math.floor(hi) or lo > hi then
    error(string.format("d:int: needs integers lo <= hi, got %s, %s", tostring(lo), tostring(hi)), 3)
  end
  if hi - lo > 2 ^ 52 then error("d:int: range wider than 2^52", 3) end
end

-- d:int(lo, hi): an integer in [lo, hi]; shrinks toward the value nearest 0.
-- Drawn uniformly, with the two ends a tenth of the time each.
function Source:int(lo, hi)
  check_int_range(lo, hi)
  local first = #self.record + 1
  local k = self:draw(hi - lo, function(rng)
    local u = rng:uniform()
    local x
    if u < 0.1 then x = lo elseif u < 0.2 then x = hi else x = lo + rng:below(hi - lo + 1) end
    return int_to_tape(x, lo, hi)
  end)
  add_span(self, "int", first, { lo = lo, hi = hi })
  return int_from_tape(k, lo, hi)
end

-- d:bool(p): true with probability p (default 1/2); shrinks to false.
function Source:bool(p)
  p = p or 0.5
  local v = self:draw(1, function(rng) return rng:uniform() < p and 1 or 0 end)
  add_span(self, "choice", #self.record)
  return v == 1
end

-- d:choice(list): an element; shrinks toward the first.
function Source:choice(list)
  if type(list) ~= "table" or #list == 0 then error("d:choice: needs a non-empty list", 2) end
  local v = self:draw(#list - 1)
  add_span(self, "choice", #self.record)
  return list[v + 1]
end

local FRAC_BITS = 2 ^ 32

-- d:float{lo, hi, nasty, nasty_values}: a float in [lo, hi] (default
-- [-8, 8]), or, with probability nasty (default 0.1), one of nasty_values
-- (default P.NASTY, whatever the range). Three tape entries: which nasty
-- value (0 = none), the integer part, the fraction (with a sign bit). An
-- ordinary value's entries grow with its distance from the origin (the
-- value of the range closest to 0): a smaller tape is a value closer to the
-- origin, so a value shrinks first to an ordinary one, then toward the
-- origin, and stops at the boundary of the failure (x > 0.5 shrinks to
-- 0.5 + 2^-32, not to 1).
function Source:float(opts)
  opts = opts or {}
  local lo, hi = opts.lo or -8, opts.hi or 8
  if lo > hi then error("d:float: lo > hi", 2) end
  if hi - lo > 2 ^ 50 then error("d:float: range wider than 2^50", 2) end
  local nasty_values = opts.nasty_values or P.NASTY
  local p = opts.nasty or 0.1
  local first = #self.record + 1
  -- nasty = 0: the entry is always 0, so that no edit of the tape (a
  -- deletion shifts other entries into its place) can make a nasty value
  local kind = self:draw(p > 0 and #nasty_values or 0, function(rng)
    if rng:uniform() < p then return 1 + rng:below(#nasty_values) end
    return 0
  end)
  -- The ordinary value is sampled in value space, then encoded.
  local ilo, ihi = math.floor(lo), math.ceil(hi)
  local sampled
  local function sample_value(rng)
    if not sampled then
      local u = rng:uniform()
      if u < 0.05 then sampled = lo elseif u < 0.1 then sampled = hi else sampled = lo + rng:uniform() * (hi - lo) end
    end
    return sampled
  end
  local iv = self:draw(ihi - ilo, function(rng)
    local x = sample_value(rng)
    local ip = x >= 0 and math.floor(x) or math.ceil(x)
    return int_to_tape(math.max(ilo, math.min(ihi, ip)), ilo, ihi)
  end)
  local fv = self:draw(2 * FRAC_BITS - 1, function(rng)
    local x = sample_value(rng)
    local ip = x >= 0 and math.floor(x) or math.ceil(x)
    local f = math.abs(x - ip)
    return math.floor(f * FRAC_BITS) * 2 + (x < 0 and 1 or 0)
  end)
  local span = { lo = lo, hi = hi, nasty = kind > 0 }
  add_span(self, "float", first, span)
  if kind > 0 then
    span.value = nasty_values[kind]
    return nasty_values[kind]
  end
  local ip = int_from_tape(iv, ilo, ihi)
  local f = math.floor(fv / 2) / FRAC_BITS
  local negative = ip < 0 or (ip == 0 and fv % 2 == 1)
  local x = math.max(lo, math.min(hi, negative and (ip - f) or (ip + f)))
  span.value = x
  return x
end

-- The three tape entries of an ordinary float x in [lo, hi].
local function float_to_tape(x, lo, hi)
  local ilo, ihi = math.floor(lo), math.ceil(hi)
  local ip = x >= 0 and math.floor(x) or math.ceil(x)
  ip = math.max(ilo, math.min(ihi, ip))
  local f = math.min(math.abs(x - ip), 1 - 2 ^ -32)
  return { 0, int_to_tape(ip, ilo, ihi), math.floor(f * FRAC_BITS) * 2 + (x < 0 and 1 or 0) }
end

-- d:floats(n, opts): a list of n floats.
function Source:floats(n, opts)
  local out = {}
  for i = 1, n do out[i] = self:float(opts) end
  return out
end

-- d:shape{{lo, hi}, {lo, hi}}: one size per dim, each shrinking toward lo
-- (or toward 0 when the range holds it).
function Source:shape(dims)
  local out = {}
  for i, r in ipairs(dims) do out[i] = self:int(r[1], r[2]) end
  return out
end

-- d:dtype(list): default f32, bf16, f16.
function Source:dtype(list) return self:choice(list or { "f32", "bf16", "f16" }) end

-- d:tensor(shape, {dtype, stride, pad, lo, hi, nasty, nasty_values, fill,
-- spikes}): a host tensor. By default every element is drawn (floats by
-- d:float, integers by d:int): fine for small tensors, and each element
-- shrinks on its own. fill = "random" is for large ones: one tape entry
-- seeds uniform values in [lo, hi] (0: all zeros), then up to `spikes`
-- (default 3) elements at drawn positions get d:float values (nasty ones
-- included). stride: a row stride; pad = k: a stride of cols + d:int(0, k).
function Source:tensor(shape, opts)
  local first = self:group_start()
  local t = self:tensor_values(shape, opts)
  self:group_end(first)
  return t
end

function Source:tensor_values(shape, opts)
  opts = opts or {}
  local dt = dtypes.get(opts.dtype or "f32", "d:tensor: dtype")
  local stride = opts.stride
  if opts.pad and #shape == 2 then stride = shape[2] + self:int(0, opts.pad) end
  local t = T.empty(shape, { dtype = dt.name, stride = #shape == 2 and stride or nil })
  local rows = #shape == 2 and shape[1] or 1
  local cols = #shape == 0 and 1 or shape[#shape]
  local p = t:data()
  local lo, hi = opts.lo or -8, opts.hi or 8
  local function put(r, c, x) C.gs_store(p, dt.code, r * t.stride + c, x) end
  if opts.fill == "random" then
    local seed = self:draw(2 ^ 31 - 1)
    if seed > 0 and rows * cols > 0 then
      local u = T.rand({ rows, cols }, { seed = seed, low = lo, high = hi, dtype = "f64" })
      local up = u:ptr()
      for r = 0, rows - 1 do
        for c = 0, cols - 1 do
          local x = up[r * cols + c]
          put(r, c, dt.int and math.floor(x) or x)
        end
      end
    end
    local spikes = rows * cols > 0 and self:int(0, opts.spikes or 3) or 0
    for _ = 1, spikes do
      local r, c = self:int(0, rows - 1), self:int(0, cols - 1)
      put(r, c, dt.int and self:int(lo, hi) or self:float(opts))
    end
    return t
  elseif opts.fill ~= nil then
    error("d:tensor: fill must be nil or \"random\", got " .. tostring(opts.fill), 2)
  end
  for r = 0, rows - 1 do
    for c = 0, cols - 1 do
      put(r, c, dt.int and self:int(lo, hi) or self:float(opts))
    end
  end
  return t
end

-- Drawers for every option of the cross-entropy family (ops.options). Each
-- option is first drawn present or absent, so a shrunk case keeps only the
-- options it needs. ctx: n, v (sizes), dtype (of the logits), reduction.
local option_drawers = {
  backend = false, -- the property decides which backends it compares
  reduction = function(d) return d:choice({ "mean", "sum", "none" }) end,
  ignore_index = function(d) return d:choice({ -1, 0, 3 }) end,
  weight = function(d, ctx)
    return d:tensor({ ctx.v }, { dtype = "f32", lo = 0, hi = 2, nasty = 0.1, nasty_values = { 0, 1e-30, 1e4 } })
  end,
  label_smoothing = function(d) return d:float({ lo = 0, hi = 1, nasty = 0.2, nasty_values = { 1, 0.5 } }) end,
  -- logit_scale must be finite and non-zero
  logit_scale = function(d) return d:float({ lo = 0.25, hi = 4, nasty = 0.3, nasty_values = { -1, -2.5, 1e-3, 30 } }) end,
  softcap = function(d) return d:float({ lo = 0.5, hi = 50, nasty = 0.2, nasty_values = { 1e-3, 1e4 } }) end,
  lse_square_scale = function(d) return d:float({ lo = 0, hi = 1, nasty = 0.1, nasty_values = { 1e-4 } }) end,
  threads = function(d) return d:choice({ 1, 2, 3, 8 }) end,
  grad = function() return true end,
  inplace = function(_, ctx, o) if o.grad and not o.grad_dtype then return true end end,
  grad_output = function(d, ctx, o)
    if not o.grad then return nil end
    if (o.reduction or "mean") == "none" and d:bool() then
      return d:tensor({ ctx.n }, { dtype = "f32", lo = -4, hi = 4, nasty = 0.05, nasty_values = { 0, 1e4, -1e4 } })
    end
    return d:float({ lo = -4, hi = 4, nasty = 0.1, nasty_values = { 0, 1e4 } })
  end,
  grad_dtype = function(d, ctx) return d:choice({ "f32", ctx.dtype == "f32" and "bf16" or "f32" }) end,
}
-- The order options are drawn in: later drawers look at earlier results.
local option_order = { "reduction", "ignore_index", "weight", "label_smoothing", "logit_scale", "softcap",
  "lse_square_scale", "threads", "grad", "grad_dtype", "inplace", "grad_output" }

-- d:ce_options(op, ctx): an option table for ops[op] (cross_entropy,
-- log_probs, entropy, ...), with only non-default options set. Every option
-- ops.options lists must have a drawer here: a new option fails loudly until
-- the generator covers it. ctx.skip: options never to draw.
function Source:ce_options(op, ctx)
  local ops = require("gradspec.ops")
  local known = ops.options[op]
  if not known then error("d:ce_options: unknown op " .. tostring(op), 2) end
  ctx = ctx or {}
  for name in pairs(known) do
    if option_drawers[name] == nil then
      error(string.format("d:ce_options: ops.options.%s has option '%s' that property.lua cannot draw yet", op, name), 2)
    end
  end
  local o = {}
  for _, name in ipairs(option_order) do
    if known[name] ~= nil and not (ctx.skip and ctx.skip[name]) and option_drawers[name] then
      -- a present/absent flag first, so that absent is the simpler choice
      if self:bool(0.4) then
        local first = self:group_start()
        local v = option_drawers[name](self, ctx, o)
        self:group_end(first)
        if v ~= nil then o[name] = v end
      end
    end
  end
  return o
end

-- Printing a case as Lua source ----------------------------------------------

local function number_text(x)
  if x ~= x then return "0/0" end
  if x == math.huge then return "1/0" end
  if x == -math.huge then return "-1/0" end
  if x == 0 and 1 / x < 0 then return "-0.0" end
  -- integers in full (a seed of 2866397280 is not 2.86639728e+09)
  if x == math.floor(x) and math.abs(x) < 2 ^ 53 then return string.format("%d", x) end
  for _, prec in ipairs({ 6, 9, 12, 15, 17 }) do
    local s = string.format("%." .. prec .. "g", x)
    if tonumber(s) == x then return s end
  end
  return string.format("%.17g", x)
end

local MAX_PRINTED = 400

local function tensor_text(t)
  local opts = string.format("{ dtype = %q", t.dtype)
  if t:dim() == 2 and t.stride ~= t.cols then opts = opts .. string.format(", stride = %d", t.stride) end
  opts = opts .. " }"
  local shape = "{ " .. table.concat(t:shape(), ", ") .. " }"
  if t:numel() == 0 then return string.format("gs.zeros(%s, %s)", shape, opts) end
  if t:numel() > MAX_PRINTED then
    -- Too big to print: its range and its unusual elements, in a comment.
    local h = t:to({ dtype = "f64", device = "cpu" }):contiguous()
    local p, cols = h:ptr(), t.cols
    local all_zero = true
    for k = 0, t:numel() - 1 do
      if p[k] ~= 0 then all_zero = false; break end
    end
    if all_zero then return string.format("gs.zeros(%s, %s)", shape, opts) end
    local lo, hi, odd, nodd = math.huge, -math.huge, {}, 0
    for k = 0, t:numel() - 1 do
      local x = p[k]
      if x ~= x or x == math.huge or x == -math.huge or (x ~= 0 and math.abs(x) < 1e-30) or math.abs(x) >= 1e4 then
        nodd = nodd + 1
        if #odd < 8 then
          odd[#odd + 1] = string.format("[%s] = %s", t:dim() == 2 and (math.floor(k / cols) .. ", " .. k % cols) or k, number_text(x))
        end
      else
        lo, hi = math.min(lo, x), math.max(hi, x)
      end
    end
    return string.format("--[[ %s tensor %s%s: %d elements in [%s, %s]%s ]]", t.dtype, shape,
      t.stride ~= t.cols and t:dim() == 2 and (", stride " .. t.stride) or "", t:numel(),
      number_text(lo), number_text(hi),
      nodd > 0 and string.format("; %d extreme: %s%s", nodd, table.concat(odd, ", "), nodd > #odd and ", ..." or "") or "")
  end
  local vals = t:totable()
  local function row(r) local s = {} for i, x in ipairs(r) do s[i] = number_text(x) end return "{ " .. table.concat(s, ", ") .. " }" end
  local body
  if t:dim() == 0 then body = number_text(vals)
  elseif t:dim() == 1 then body = row(vals)
  else
    local rows = {}
    for i, r in ipairs(vals) do rows[i] = row(r) end
    body = "{ " .. table.concat(rows, ", ") .. " }"
  end
  return string.format("gs.tensor(%s, %s)", body, opts)
end

-- P.format(value): a case as Lua source, tables with sorted keys.
function P.format(v, indent, seen)
  indent = indent or ""
  local tv = type(v)
  if tv == "number" then return number_text(v) end
  if tv == "string" then return string.format("%q", v) end
  if tv ~= "table" then return tostring(v) end
  if T.is_tensor(v) then return tensor_text(v) end
  seen = seen or {}
  if seen[v] then return "<cycle>" end
  seen[v] = true
  local keys, n = {}, #v
  for k in pairs(v) do
    if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) < type(b)
  end)
  local parts = {}
  for i = 1, n do parts[#parts + 1] = P.format(v[i], indent .. "  ", seen) end
  for _, k in ipairs(keys) do
    local name = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k or ("[" .. P.format(k) .. "]")
    parts[#parts + 1] = name .. " = " .. P.format(v[k], indent .. "  ", seen)
  end
  seen[v] = nil
  local flat = "{ " .. table.concat(parts, ", ") .. " }"
  if #parts == 0 then return "{}" end
  if #flat <= 100 then return flat end
  return "{\n" .. indent .. "  " .. table.concat(parts, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
end

-- Running and shrinking ----------------------------------------------------------

-- Runs the check on a case: returns nil when it holds, else the reason.
local function failure_of(check, case)
  local ok, res = xpcall(function() return check(case) end, function(e)
    if type(e) == "string" then return e end
    return tostring(e)
  end)
  if not ok then return res end
  if res == false then return "check returned false" end
  return nil
end

-- Replays the generator on a tape; returns the case and the tape it
-- actually consumed, or nil when the tape is rejected.
local function replay(generator, tape, max_draws)
  local src = new_source(tape, nil, max_draws)
  local ok, case = pcall(generator, src)
  if not ok then return nil end
  return case, src.record, src.spans
end

-- shortlex: shorter first, then the first differing entry smaller.
local function simpler(a, b)
  if #a ~= #b then return #a < #b end
  for i = 1, #a do
    if a[i] ~= b[i] then return a[i] < b[i] end
  end
  return false
end

local function copy(t) local o = {} for i = 1, #t do o[i] = t[i] end return o end

local function shrink(generator, check, best, opts)
  local budget, deadline = opts.max_shrinks, opts.now() + opts.shrink_time
  local steps, tries = 0, 0
  local function exhausted() return tries >= budget or opts.now() > deadline end

  -- Keeps the candidate when it is simpler and still fails.
  local function try(candidate)
    if exhausted() then return false end
    if not simpler(candidate, best.tape) then return false end
    tries = tries + 1
    local case, tape, spans = replay(generator, candidate, opts.max_draws)
    if case == nil or not simpler(tape, best.tape) then return false end
    local why = failure_of(check, case)
    if not why then return false end
    best.tape, best.case, best.reason, best.spans = tape, case, why, spans
    steps = steps + 1
    return true
  end

  local function zero_blocks()
    local improved = false
    local size = 1
    while size * 2 <= #best.tape do size = size * 2 end
    while size >= 1 and not exhausted() do
      local i = 1
      while i <= #best.tape and not exhausted() do
        local c, any = copy(best.tape), false
        for k = i, math.min(i + size - 1, #c) do
          if c[k] ~= 0 then any = true end
          c[k] = 0
        end
        if any and try(c) then improved = true end
        i = i + size
      end
      size = math.floor(size / 2)
    end
    return improved
  end

  local function delete_blocks()
    local improved = false
    for _, size in ipairs({ 8, 4, 3, 2, 1 }) do
      local i = #best.tape - size + 1
      while i >= 1 and not exhausted() do
        local c = {}
        for k = 1, #best.tape do
          if k < i or k >= i + size then c[#c + 1] = best.tape[k] end
        end
        if try(c) then improved = true end
        i = math.min(i - 1, #best.tape - size + 1)
      end
    end
    return improved
  end

  -- The first entry of every int and choice span: sizes, options, flags.
  local function structure()
    local set = {}
    for _, sp in ipairs(best.spans) do
      if sp.kind == "int" or sp.kind == "choice" then set[sp.first] = true end
    end
    return set
  end

  -- Lowers each entry by binary search; structure_only: only sizes, options
  -- and flags, a cheap first pass that makes everything after it smaller.
  local function lower_entries(structure_only)
    local improved = false
    local i = 1
    local only = structure_only and structure() or nil
    while i <= #best.tape and not exhausted() do
      local v = best.tape[i]
      if only and not only[i] then v = 0 end
      if v > 0 then
        local c = copy(best.tape)
        c[i] = 0
        if try(c) then
          improved = true
        else
          local lo, hi = 0, v
          while lo + 1 < hi and not exhausted() and best.tape[i] == hi do
            local mid = math.floor((lo + hi) / 2)
            c = copy(best.tape)
            c[i] = mid
            if try(c) then improved = true; hi = mid else lo = mid end
          end
        end
        if only then only = structure() end
      end
      i = i + 1
    end
    return improved
  end

  local function without(tape, first, last)
    local c = {}
    for k = 1, #tape do
      if k < first or k > last then c[#c + 1] = tape[k] end
    end
    return c
  end

  -- A size drawn before a list: one less, with a run of drawn values
  -- deleted. Runs of 1 shorten a list; runs as long as another size (a
  -- row of V values) take a row off a matrix. A flag or choice turned off
  -- with what it guarded deleted drops an option and its value.
  local function lower_and_delete()
    local improved = false
    local si, sizes = 1, 0
    while si <= #best.spans and sizes < 32 and not exhausted() do
      local sz = best.spans[si]
      if (sz.kind == "int" or sz.kind == "choice") and best.tape[sz.first] > 0 then
        sizes = sizes + 1
        local runs, seen = { 1 }, { [1] = true }
        for _, sp in ipairs(best.spans) do
          local v = sp.kind == "int" and int_from_tape(best.tape[sp.first], sp.lo, sp.hi)
          if v and v > 1 and v <= 4096 and not seen[v] then runs[#runs + 1], seen[v] = v, true end
        end
        local done = false
        for _, run in ipairs(runs) do
          local sj = si + 1
          while not done and sj + run - 1 <= math.min(#best.spans, si + 64) and not exhausted() do
            local first, last = best.spans[sj].first, best.spans[sj + run - 1].last
            local c = without(best.tape, first, last)
            c[sz.first] = best.tape[sz.first] - 1
            if try(c) then
              improved, done = true, true
            else
              sj = sj + 1
            end
          end
          if done then break end
        end
        -- after a success the spans moved: look at the same size again
        if not done then si = si + 1 end
      else
        si = si + 1
      end
    end
    return improved
  end

  -- Two ordinary floats (a, b) -> (0, a + b): moves mass to the later one
  -- so that the earlier can be deleted (sum-like properties).
  local function redistribute()
    local improved = false
    local floats = {}
    for _, sp in ipairs(best.spans) do
      if sp.kind == "float" and not sp.nasty and sp.value then floats[#floats + 1] = sp end
    end
    if #floats > 256 then return false end
    for i = 1, #floats do
      for j = i + 1, math.min(#floats, i + 16) do
        if exhausted() then return improved end
        local a, b = floats[i], floats[j]
        local sum = a.value + b.value
        if a.value ~= 0 and sum >= b.lo and sum <= b.hi and 0 >= a.lo and 0 <= a.hi then
          local c = copy(best.tape)
          local ea, eb = float_to_tape(0, a.lo, a.hi), float_to_tape(sum, b.lo, b.hi)
          for k = 0, 2 do c[a.first + k], c[b.first + k] = ea[k + 1], eb[k + 1] end
          if try(c) then
            improved = true
            return improved -- spans changed; the outer loop comes back
          end
        end
      end
    end
    return improved
  end

  -- A float span's three entries replaced by those of the ordinary value x.
  local function with_float(sp, x)
    local c = copy(best.tape)
    local e = float_to_tape(x, sp.lo, sp.hi)
    for k = 0, 2 do c[sp.first + k] = e[k + 1] end
    return c
  end

  -- The float spans, collected before any edit (a success moves them).
  local function float_spans(pred)
    local out = {}
    for _, sp in ipairs(best.spans) do
      if sp.kind == "float" and sp.last - sp.first == 2 and pred(sp) then out[#out + 1] = sp end
    end
    return out
  end

  -- A present option dropped whole: its flag (the choice entry right
  -- before the group of its value) lowered to "absent" and the value's
  -- entries deleted. Deleting runs of spans reaches the same only where a
  -- run happens to be as long as the value (a weight tensor of V floats).
  local function drop_groups()
    local improved = false
    local k = #best.spans.groups
    while k >= 1 and not exhausted() do
      local g = best.spans.groups[k]
      local flag = nil
      for _, sp in ipairs(best.spans) do
        if sp.kind == "choice" and sp.last == g.first - 1 then flag = sp end
      end
      if flag and best.tape[flag.first] > 0 then
        local c = without(best.tape, g.first, g.last)
        c[flag.first] = 0
        if try(c) then improved = true end
      end
      k = math.min(k - 1, #best.spans.groups)
    end
    return improved
  end

  -- A nasty value (other than NaN) as the closest ordinary value: itself
  -- when it lies in [lo, hi], else the nearer end (1e4 in [-10, 10]: 10). A
  -- simpler tape, from which the ordinary passes can move the value on.
  -- (Lowering the nasty entry alone swaps the value for whatever the
  -- ordinary entries under it held: usually a value that passes.)
  local function nasty_to_ordinary()
    for _, sp in ipairs(float_spans(function(sp) return sp.nasty and sp.value == sp.value end)) do
      if exhausted() then return false end
      if try(with_float(sp, math.max(sp.lo, math.min(sp.hi, sp.value)))) then
        return true -- spans changed; the outer loop comes back
      end
    end
    return false
  end

  -- An ordinary value one integer closer to the origin with the largest
  -- fraction (3.7 -> 2.99..., -1.2 -> -0.99...): a smaller integer entry
  -- that lowering single entries cannot reach, since it needs the fraction
  -- raised as well. Lowering the fraction afterwards finds the boundary.
  local function toward_origin()
    local improved = false
    for _, sp in ipairs(float_spans(function(sp) return not sp.nasty and sp.value ~= nil end)) do
      if exhausted() then break end
      local x = sp.value
      local ip = x >= 0 and math.floor(x) or math.ceil(x)
      if ip ~= 0 then
        local closer = ip > 0 and (ip - 1) + (1 - 2 ^ -32) or (ip + 1) - (1 - 2 ^ -32)
        if closer >= sp.lo and closer <= sp.hi and try(with_float(sp, closer)) then improved = true end
      end
    end
    return improved
  end

  repeat
    local improved = false
    if nasty_to_ordinary() then improved = true end
    if drop_groups() then improved = true end
    if lower_entries(true) then improved = true end
    if zero_blocks() then improved = true end
    if lower_and_delete() then improved = true end
    if lower_entries(false) then improved = true end
    if delete_blocks() then improved = true end
    if redistribute() then improved = true end
    if toward_origin() then improved = true end
  until not improved or exhausted()
  return steps, tries, exhausted()
end

local function now()
  return tonumber(C.gs_now())
end

-- P.search(generator, check, opts) -> result, without raising:
-- { ok = true, runs } or { ok = false, run, seed, case, reason, original,
-- original_reason, tape, shrink_steps, shrink_tries, shrink_exhausted }.
-- opts: runs (100), seed (the run's seed, gs.get_seed()), max_shrinks
-- (5000 replays), shrink_time (30 s), max_draws (100000 per case),
-- max_rejects (10 * runs), shrink (true).
function P.search(generator, check, opts)
  opts = opts or {}
  local o = {
    runs = opts.runs or 100, seed = opts.seed or T.get_seed(), max_shrinks = opts.max_shrinks or 5000,
    shrink_time = opts.shrink_time or 30, max_draws = opts.max_draws or 100000, now = now,
  }
  if type(generator) ~= "function" or type(check) ~= "function" then
    error("property: needs a generator function and a check function", 3)
  end
  local rng = new_rng(o.seed)
  local rejects, max_rejects = 0, opts.max_rejects or 10 * o.runs
  local run = 0
  while run < o.runs do
    local src = new_source({}, rng, o.max_draws)
    local ok, case = pcall(generator, src)
    if not ok then
      if case ~= REJECT then error("property: the generator failed: " .. tostring(case), 0) end
      rejects = rejects + 1
      if rejects > max_rejects then
        error(string.format("property: the generator rejected %d cases (d:assume) before %d runs were done", rejects, o.runs), 0)
      end
    else
      run = run + 1
      local why = failure_of(check, case)
      if why then
        local res = { ok = false, run = run, seed = o.seed, original = case, original_reason = why,
          case = case, reason = why, tape = src.record }
        if opts.shrink ~= false then
          local best = { tape = src.record, case = case, reason = why, spans = src.spans }
          res.shrink_steps, res.shrink_tries, res.shrink_exhausted = shrink(generator, check, best, o)
          res.case, res.reason, res.tape = best.case, best.reason, best.tape
        end
        return res
      end
    end
  end
  return { ok = true, runs = run, seed = o.seed }
end

-- The running spec `it` (its file and full name), for the reproduction line.
local function current_it() return require("gradspec.runner").current_it() end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function exe_path()
  local exe = ffi.string(C.gs_self_exe())
  -- $PWD can be stale (ctest changes directory without updating it): ask.
  local pipe = io.popen("pwd 2>/dev/null")
  local cwd = pipe and pipe:read("*l")
  if pipe then pipe:close() end
  if cwd and exe:sub(1, #cwd + 1) == cwd .. "/" then
    exe = exe:sub(#cwd + 2)
    if not exe:find("/") then exe = "./" .. exe end -- a bare name would be looked up on PATH
  end
  return exe
end

local function reproduce_line(seed, fixed_seed)
  local item = current_it()
  if not item then return string.format("gs.property(..., { seed = %s })", number_text(seed)) end
  local line = string.format("%s run %s --filter %s", exe_path(), item.file, shell_quote(item.full_name))
  if not fixed_seed then line = line .. " --seed " .. number_text(seed) end
  return line
end

local function indent_text(s, pad)
  return pad .. tostring(s):gsub("\n", "\n" .. pad)
end

-- The failure message of a result from P.search.
function P.message(name, res, fixed_seed)
  local lines = {
    string.format("property '%s' failed on run %d (seed %s)", name, res.run, number_text(res.seed)),
  }
  if res.shrink_steps then
    lines[#lines + 1] = string.format("minimal case (shrunk in %d steps, %d replays%s):", res.shrink_steps,
      res.shrink_tries, res.shrink_exhausted and ", stopped at the shrink budget" or "")
  else
    lines[#lines + 1] = "failing case (not shrunk):"
  end
  lines[#lines + 1] = indent_text(P.format(res.case, "  "), "  ")
  lines[#lines + 1] = "failure:"
  lines[#lines + 1] = indent_text(res.reason, "  ")
  lines[#lines + 1] = "reproduce: " .. reproduce_line(res.seed, fixed_seed)
  return table.concat(lines, "\n")
end

-- The tensors of a case by their path in it ("logits", "opts.weight").
local function case_tensors(v, prefix, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) ~= "table" or seen[v] then return out end
  if T.is_tensor(v) then
    out[prefix ~= "" and prefix or "case"] = v
    return out
  end
  seen[v] = true
  for k, x in pairs(v) do
    case_tensors(x, prefix == "" and tostring(k) or (prefix .. "." .. tostring(k)), out, seen)
  end
  return out
end

-- With GRADSPEC_PROPERTY_SAVE=DIR, a failing case's tensors are written to
-- DIR/NAME-seed-S.safetensors (the printed case in its metadata).
local function save_case(name, res)
  local dir = os.getenv("GRADSPEC_PROPERTY_SAVE")
  local tensors = case_tensors(res.case, "")
  if not next(tensors) then return nil end
  if not dir or dir == "" then
    for _, t in pairs(tensors) do
      if t:numel() > MAX_PRINTED then
        return "tensors: too large to print; set GRADSPEC_PROPERTY_SAVE=DIR to get them as a .safetensors file"
      end
    end
    return nil
  end
  local file = string.format("%s/%s-seed-%s.safetensors", dir, (name:gsub("[^%w_%-]+", "_")), number_text(res.seed))
  local ok, err = pcall(require("gradspec.io").save_safetensors, file, tensors, { case = P.format(res.case) })
  if not ok then return "tensors: could not be saved: " .. tostring(err) end
  return "tensors: saved to " .. file
end

-- gs.property(name, generator, check, opts): runs the property (see
-- P.search for opts) and raises with the minimal failing case, the seed and
-- a command line that reproduces it. Counts as one assertion.
function P.property(name, generator, check, opts)
  if type(name) ~= "string" then error("property: the first argument must be a name", 2) end
  opts = opts or {}
  A.count_one() -- counts towards the running `it`
  local res = P.search(generator, check, opts)
  if res.ok then return res end
  local msg = P.message(name, res, opts.seed ~= nil)
  local saved = save_case(name, res)
  if saved then msg = msg .. "\n" .. saved end
  error(msg, 0)
end

P.exports = { property = P.property, property_search = P.search }

return P

-- One comparison turned into what the HTML report draws: two histograms of
-- the error (in units of the tolerance and in ulps of the dtype), a map of
-- where the mismatches are (rows x columns, binned), the worst elements, and
-- sentences naming the pattern (one row, the last columns, every k-th
-- column, the target column). Whatever the tensor's size, the record has a
-- fixed cap: TOL_BINS + 2 * ULP_BINS counts, at most MAP_ROWS x MAP_COLS map
-- cells, WORST elements, MAX_RANGES ranges of rows and columns.
local ffi = require("ffi")

local M = {}

M.MAP_ROWS, M.MAP_COLS, M.WORST, M.MAX_RANGES, M.MAX_TARGETS = 48, 128, 10, 8, 512

-- Tolerance units r = |a - e| / (atol + rtol |e|), in half-decade bins:
-- 1 equal (or equal by rule: equal infinities, both subnormal, NaN == NaN
-- with equal_nan), 2 (0, 1e-4], 3..18 (10^((j-11)/2), 10^((j-10)/2)],
-- 19 above 1e4, 20 NaN or inf that does not match. Bins 11 and up fail.
M.TOL_BINS, M.TOL_FIRST_FAIL = 20, 11
-- ulps of the coarser dtype: 1 equal, 2 below one ulp, 3..26 [2^(j-3),
-- 2^(j-2)), 27 from 2^24 on, 28 NaN or inf that does not match.
M.ULP_BINS = 28

-- Significand bits and smallest normal exponent: one ulp of y is
-- 2^(max(exponent(y), emin) - (p - 1)).
local FLOAT = { f64 = { 53, -1022 }, f32 = { 24, -126 }, bf16 = { 8, -126 }, f16 = { 11, -14 } }

-- The dtype whose spacing the ulps count: the coarser of the two.
function M.ulp_dtype(a, b)
  local fa, fb = FLOAT[a], FLOAT[b]
  if fa and fb then return fa[1] <= fb[1] and a or b end
  return fa and a or fb and b or a
end

local function ulp_of(y, spec)
  if not spec then return 1 end -- integers: one unit
  local _, ex = math.frexp(math.abs(y))
  if y == 0 then ex = spec[2] + 1 end
  return 2 ^ (math.max(ex - 1, spec[2]) - (spec[1] - 1))
end

local function tol_bin(r)
  if r <= 1e-4 then return 2 end
  if r > 1e4 then return 19 end
  local j = 10 + math.ceil(2 * math.log10(r))
  return j < 3 and 3 or j > 18 and 18 or j
end

local function ulp_bin(u)
  if u < 1 then return 2 end
  if u >= 2 ^ 24 then return 27 end
  local _, ex = math.frexp(u)
  local j = 2 + ex
  return j > 26 and 26 or j
end

-- "3", "5-9", ...: the set flags[0 .. n-1] as at most MAX_RANGES ranges;
-- also how many are set and the first few thousand of them.
local function ranges(flags, n)
  local out, count, list = {}, 0, {}
  local i = 0
  while i < n do
    if flags[i] ~= 0 then
      local j = i
      while j + 1 < n and flags[j + 1] ~= 0 do j = j + 1 end
      if #out < M.MAX_RANGES then out[#out + 1] = i == j and tostring(i) or (i .. "-" .. j) end
      for k = i, j do
        if #list < 4096 then list[#list + 1] = k end
      end
      count = count + j - i + 1
      i = j + 1
    else
      i = i + 1
    end
  end
  return out, count, list
end

local function ordinal(k)
  local tail = k % 100
  local suffix = (tail >= 11 and tail <= 13) and "th" or ({ "st", "nd", "rd" })[k % 10] or "th"
  return k .. suffix
end

-- Sentences that name where the mismatches are, for the report's "where".
local function where_sentences(rec, R, V, row_count, col_count, col_list, col_ranges)
  local s = {}
  if rec.dim == 2 then
    if row_count == R and R > 1 then s[#s + 1] = string.format("every row (%d)", R)
    else
      s[#s + 1] = string.format("%d of %d row%s: %s%s", row_count, R, R == 1 and "" or "s",
        table.concat(rec.bad_rows, ", "), row_count > 0 and #rec.bad_rows == M.MAX_RANGES and ", ..." or "")
    end
  end
  local unit = rec.unit
  local n_cols = V
  if col_count == n_cols and n_cols > 1 then
    s[#s + 1] = string.format("every %s (%d)", unit, n_cols)
  elseif col_count > 0 then
    local step = #col_list >= 3 and #col_list == col_count and col_list[2] - col_list[1] or nil
    if step and step > 1 then
      for k = 3, #col_list do
        if col_list[k] - col_list[k - 1] ~= step then step = nil; break end
      end
    else step = nil end
    local contiguous = #col_ranges == 1
    if step then
      s[#s + 1] = string.format("every %s %s from %d (%d %ss)", ordinal(step), unit, col_list[1], col_count, unit)
    elseif contiguous and col_list[#col_list] == n_cols - 1 and col_count < n_cols then
      s[#s + 1] = string.format("the last %d %s%s of %d (%s)", col_count, unit, col_count == 1 and "" or "s", n_cols,
        col_ranges[1])
    elseif contiguous and col_list[1] == 0 then
      s[#s + 1] = string.format("the first %d %s%s of %d (0-%d)", col_count, unit, col_count == 1 and "" or "s",
        n_cols, col_count - 1)
    else
      s[#s + 1] = string.format("%d of %d %ss: %s%s", col_count, n_cols, unit, table.concat(col_ranges, ", "),
        #col_ranges == M.MAX_RANGES and ", ..." or "")
    end
  end
  if rec.at_target and rec.bad > 0 then
    if rec.at_target == rec.bad then
      s[#s + 1] = rec.bad == 1 and "the mismatch is at its row's target column"
        or string.format("all %d mismatches are at their row's target column", rec.bad)
    elseif 2 * rec.at_target >= rec.bad then -- a few at the target among many elsewhere say nothing
      s[#s + 1] = string.format("%d of the %d mismatches are at their row's target column", rec.at_target, rec.bad)
    end
  end
  return s
end

local function cpu_chunk()
  local ok, C = pcall(function() return require("gradspec.ffi").C end)
  if not ok then return nil end
  local ok2, v = pcall(function() return tonumber(C.gs_ce_cpu_chunk()) end)
  return ok2 and v or nil
end

-- c: see capture.comparison. Returns a flat record (serial.lua can carry it).
function M.measure(c)
  local pa, pe, e0 = c.actual, c.expected, c.scalar
  local n = c.n
  local dim = c.dim
  local R, V = 1, n
  if dim == 2 then R, V = c.rows, c.cols end
  local rtol, atol, tiny = c.rtol, c.atol, c.tiny or 0
  local udt = M.ulp_dtype(c.adtype or c.dtype, c.dtype or c.edtype)
  local uspec = FLOAT[udt]
  local rec = {
    kind = c.kind, label = c.label, where = c.where, failed = c.failed and true or false,
    dim = dim, rows = R, cols = V, n = n, rtol = rtol, atol = atol, adtype = c.adtype, edtype = c.edtype,
    ulp_dtype = udt, expected_name = c.expected_name, actual_name = c.actual_name,
    unit = c.unit or (dim == 2 and "column" or "element"),
  }
  local tol_hist, ulp_pass, ulp_fail = {}, {}, {}
  for j = 1, M.TOL_BINS do tol_hist[j] = 0 end
  for j = 1, M.ULP_BINS do ulp_pass[j], ulp_fail[j] = 0, 0 end
  local mr, mc = math.min(R, M.MAP_ROWS), math.min(V, M.MAP_COLS)
  local map = ffi.new("int32_t[?]", mr * mc)
  local row_bad, col_bad = ffi.new("uint8_t[?]", R), ffi.new("uint8_t[?]", V)
  local tgt = nil
  if dim == 2 and c.target and c.target:numel() == R then
    local tv = c.target:to({ dtype = "f64", device = "cpu" }):contiguous()
    tgt = tv:ptr()
    rec.target = {}
    for i = 0, math.min(R, M.MAX_TARGETS) - 1 do rec.target[i + 1] = tgt[i] end
    rec.at_target = 0
  end
  local worst_k, worst_r = {}, {}
  local bad, max_r = 0, 0
  local inf = math.huge
  for k = 0, n - 1 do
    local x, y = pa[k], e0 or pe[k]
    local tb, ub, ok
    local r = 0
    if x ~= x or y ~= y then
      ok = x ~= x and y ~= y and c.equal_nan
      if ok then tb, ub = 1, 1 else tb, ub, r = 20, 28, inf end
    elseif x == y then
      ok, tb, ub = true, 1, 1
    elseif x == inf or x == -inf or y == inf or y == -inf then
      ok, tb, ub, r = false, 20, 28, inf
    elseif math.abs(x) < tiny and math.abs(y) < tiny then
      ok, tb, ub = true, 1, 1
    else
      local d = math.abs(x - y)
      local tol = atol + rtol * math.abs(y)
      ok = d <= tol
      r = d / tol
      if r ~= r then r = inf end
      tb = tol_bin(r)
      if not ok and tb < M.TOL_FIRST_FAIL then tb = M.TOL_FIRST_FAIL end
      ub = ulp_bin(d / ulp_of(y, uspec))
    end
    tol_hist[tb] = tol_hist[tb] + 1
    if ok then ulp_pass[ub] = ulp_pass[ub] + 1 else ulp_fail[ub] = ulp_fail[ub] + 1 end
    if r > max_r then max_r = r end
    if not ok then
      bad = bad + 1
      local i, j = 0, k
      if dim == 2 then i, j = math.floor(k / V), k % V end
      local b = math.floor(i * mr / R) * mc + math.floor(j * mc / V)
      map[b] = map[b] + 1
      row_bad[i], col_bad[j] = 1, 1
      if tgt and tgt[i] == j then rec.at_target = rec.at_target + 1 end
    end
    -- the worst elements: failures by r, then passing ones by their margin
    if r > 0 and (#worst_r < M.WORST or r > worst_r[#worst_r]) then
      local pos = #worst_r + 1
      while pos > 1 and worst_r[pos - 1] < r do pos = pos - 1 end
      table.insert(worst_r, pos, r)
      table.insert(worst_k, pos, k)
      if #worst_r > M.WORST then worst_r[#worst_r], worst_k[#worst_k] = nil, nil end
    end
  end
  rec.bad, rec.max_ratio = bad, max_r
  rec.tol_hist, rec.ulp_pass, rec.ulp_fail = tol_hist, ulp_pass, ulp_fail
  -- the map as sparse (cell, count) pairs: most cells of a failure are empty
  rec.map_rows, rec.map_cols = mr, mc
  local cells = {}
  for b = 0, mr * mc - 1 do
    if map[b] ~= 0 then
      cells[#cells + 1] = b
      cells[#cells + 1] = map[b]
    end
  end
  rec.map = cells
  local col_count, col_list
  rec.bad_rows, rec.n_bad_rows = ranges(row_bad, R)
  rec.bad_cols, col_count, col_list = ranges(col_bad, V)
  rec.n_bad_cols = col_count
  rec.pattern = where_sentences(rec, R, V, rec.n_bad_rows, col_count, col_list, rec.bad_cols)
  if dim == 2 then
    local chunk = c.chunk or cpu_chunk()
    if chunk and chunk > 0 and V > chunk then rec.chunk = chunk end
  end
  -- worst elements as flat triples: index, actual, expected
  local w = {}
  for i, k in ipairs(worst_k) do
    w[#w + 1] = k
    w[#w + 1] = pa[k]
    w[#w + 1] = e0 or pe[k]
    if i >= M.WORST then break end
  end
  rec.worst = w
  return rec
end

-- The ratio and ulps of one element, as the report's worst table shows them.
function M.element(rec, x, y)
  if x ~= x or y ~= y or x == math.huge or x == -math.huge or y == math.huge or y == -math.huge then
    return x == y and 0 or math.huge, x == y and 0 or math.huge
  end
  local d = math.abs(x - y)
  return d / (rec.atol + rec.rtol * math.abs(y)), d / ulp_of(y, FLOAT[rec.ulp_dtype])
end

return M

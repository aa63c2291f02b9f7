-- One comparison's block in the run report: what was compared, the two
-- histograms of its error, and for a failed one the map of where the
-- mismatches are and its worst elements.
local page = require("gradspec.html.page")
local measure = require("gradspec.html.measure")
local hist = require("gradspec.html.svg_hist")
local map = require("gradspec.html.svg_map")
local worst = require("gradspec.html.worst_table")

local M = {}

local function tol_bins(rec)
  local bins = {}
  for j = 1, measure.TOL_BINS do
    local n = rec.tol_hist[j] or 0
    if j == 1 then bins[j] = { equal = n, title = "equal" }
    elseif j >= measure.TOL_FIRST_FAIL then bins[j] = { fail = n, title = "beyond the tolerance" }
    else bins[j] = { pass = n, title = "within the tolerance" } end
  end
  local ticks = { [1.5] = "=", [20.5] = "NaN/inf" }
  local names = { [3] = "1e-4", [5] = "1e-3", [7] = "0.01", [9] = "0.1", [11] = "1", [13] = "10", [15] = "100", [17] = "1e3",
    [19] = "1e4" }
  for k, v in pairs(names) do ticks[k] = v end
  return bins, ticks
end

local function ulp_bins(rec)
  local bins = {}
  for j = 1, measure.ULP_BINS do
    local p, f = rec.ulp_pass[j] or 0, rec.ulp_fail[j] or 0
    bins[j] = j == 1 and { equal = p, fail = f, title = "0 ulps" } or { pass = p, fail = f, title = "ulps" }
  end
  local ticks = { [1.5] = "0", [28.5] = "NaN/inf" }
  local names = { "1", "4", "16", "64", "256", "1k", "4k", "16k", "64k", "256k", "1M", "4M", "16M" }
  for i, v in ipairs(names) do ticks[1 + 2 * i] = v end
  return bins, ticks
end

-- The histograms only (a passing comparison under --html-all).
function M.histograms(rec)
  local tb, tt = tol_bins(rec)
  local ub, ut = ulp_bins(rec)
  return '<div class="plots">' .. hist.svg({
    title = "error in units of the tolerance", bins = tb, ticks = tt, threshold = measure.TOL_FIRST_FAIL,
    threshold_label = "tolerance", xlabel = "|a \226\136\146 e| / (atol + rtol \194\183 |e|), log scale",
  }) .. hist.svg({
    title = "error in ulps of " .. tostring(rec.ulp_dtype), bins = ub, ticks = ut,
    xlabel = "|a \226\136\146 e| / ulp(e) in " .. tostring(rec.ulp_dtype) .. ", log scale (red: beyond the tolerance)",
  }) .. "</div>"
end

-- A table row for a passing comparison (--html-all): what, how many, the
-- largest error, and both histograms small.
function M.row(rec)
  local esc, num = page.esc, page.num
  if rec.measure_error then
    return string.format('<tr><td>%s</td><td colspan="4" class="muted">could not be measured: %s</td></tr>',
      esc(rec.label), esc(rec.measure_error))
  end
  local tb = tol_bins(rec)
  local ub = ulp_bins(rec)
  return string.format('<tr data-elements="%d" data-mismatches="%d"><td>%s %s%s</td><td class="n">%s</td>'
    .. '<td class="n">%s</td><td>%s</td><td>%s</td></tr>', rec.n, rec.bad, page.badge(rec.failed and "fail" or "pass"),
    esc(rec.label), rec.where and ('<br><span class="muted">' .. esc(rec.where) .. "</span>") or "", num(rec.n),
    esc(num(rec.max_ratio, 3)),
    hist.mini({ title = "error in units of the tolerance", bins = tb, threshold = measure.TOL_FIRST_FAIL,
      ticks = { [3] = "1e-4", [11] = "1", [19] = "1e4" } }),
    hist.mini({ title = "error in ulps of " .. tostring(rec.ulp_dtype), bins = ub,
      ticks = { [3] = "1", [15] = "4k", [27] = "16M" } }))
end

-- The header of the table M.row fills.
function M.rows_header()
  return '<table class="grid"><thead><tr><th>comparison</th><th>elements</th><th>largest error (tolerances)</th>'
    .. "<th>|a &#8722; e| / (atol + rtol |e|)</th><th>ulps</th></tr></thead><tbody>"
end

local function shape(rec)
  if rec.dim == 2 then return rec.rows .. " x " .. rec.cols end
  if rec.dim == 1 then return tostring(rec.cols) end
  return "scalar"
end

function M.html(rec)
  local esc, num = page.esc, page.num
  if rec.measure_error then
    return string.format('<div class="compare"><h4>%s %s</h4><p class="muted">could not be measured: %s</p></div>',
      page.badge(rec.failed and "fail" or "pass"), esc(rec.label), esc(rec.measure_error))
  end
  local out = { string.format('<div class="compare" data-elements="%d" data-mismatches="%d">', rec.n, rec.bad) }
  out[#out + 1] = string.format('<h4>%s %s</h4>', page.badge(rec.failed and "fail" or "pass"), esc(rec.label))
  out[#out + 1] = string.format(
    '<div class="muted">%s of %s elements mismatch &#183; shape %s &#183; %s vs %s &#183; rtol %s, atol %s &#183; '
      .. "largest error %s tolerance%s%s</div>",
    num(rec.bad), num(rec.n), esc(shape(rec)), esc(rec.adtype or "?"), esc(rec.edtype or "?"), esc(num(rec.rtol)),
    esc(num(rec.atol)), esc(num(rec.max_ratio, 3)), rec.max_ratio == 1 and "" or "s",
    rec.where and (" &#183; at " .. esc(rec.where)) or "")
  if rec.failed and #(rec.pattern or {}) > 0 then
    out[#out + 1] = '<ul class="where">'
    for _, s in ipairs(rec.pattern) do out[#out + 1] = "<li>" .. esc(s) .. "</li>" end
    out[#out + 1] = "</ul>"
  end
  out[#out + 1] = M.histograms(rec)
  if rec.failed and rec.n > 1 then out[#out + 1] = map.svg(rec) end
  if rec.failed then out[#out + 1] = worst.html(rec) end
  out[#out + 1] = "</div>"
  return table.concat(out, "\n")
end

return M

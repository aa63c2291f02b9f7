-- Where the mismatches of one comparison are, as inline SVG: rows x columns
-- binned into at most measure.MAP_ROWS x MAP_COLS cells (the darker the red,
-- the larger the share of the cell's elements that mismatch), bars above and
-- to the right that count the mismatches per column and per row, each row's
-- target column ringed, and the CPU kernel's chunk boundaries dashed.
local page = require("gradspec.html.page")

local M = {}

local LEFT, TOP_BARS, TOP_GAP, RIGHT_GAP, RIGHT_BARS, BOTTOM = 62, 46, 6, 8, 64, 44
local CELLS_W = 860

local function f(x) return string.format("%.1f", x) end

-- Elements in bin b of n things split into m bins (i goes to floor(i m / n)).
local function bin_size(b, n, m)
  return math.ceil((b + 1) * n / m) - math.ceil(b * n / m)
end
M.bin_size = bin_size

-- Round tick values along an axis of n things: 0, n - 1 and a few between.
local function ticks(n, avoid_step)
  local out = { 0 }
  if n <= 1 then return out end
  local raw = (n - 1) / 5
  local p = 10 ^ math.floor(math.log10(raw))
  local step = raw / p < 1.5 and p or raw / p < 3.5 and 2 * p or raw / p < 7.5 and 5 * p or 10 * p
  if avoid_step then step = avoid_step end
  step = math.max(1, math.floor(step)) -- indices are integers
  local v = step
  while v < n - 1 - step * 0.35 do
    out[#out + 1] = v
    v = v + step
  end
  out[#out + 1] = n - 1
  return out
end

function M.svg(rec)
  local c = page.colour
  local R, V, mr, mc = rec.rows, rec.cols, rec.map_rows, rec.map_cols
  local cw = CELLS_W / mc
  local ch = math.max(6, math.min(22, 320 / mr))
  local cells_h = ch * mr
  local bars_y = 36 -- the per-column bars, above the cells (chunk labels above them)
  local x0, y0 = LEFT, bars_y + TOP_BARS + TOP_GAP
  local W = LEFT + CELLS_W + RIGHT_GAP + RIGHT_BARS + 10
  local H = y0 + cells_h + BOTTOM
  local counts, row_sum, col_sum = {}, {}, {}
  for b = 0, mr - 1 do row_sum[b] = 0 end
  for b = 0, mc - 1 do col_sum[b] = 0 end
  local cells = rec.map or {}
  for i = 1, #cells - 1, 2 do
    local b, n = cells[i], cells[i + 1]
    counts[b] = n
    local rb, cb = math.floor(b / mc), b % mc
    row_sum[rb] = row_sum[rb] + n
    col_sum[cb] = col_sum[cb] + n
  end
  local out = {}
  local function add(s) out[#out + 1] = s end
  add(string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">',
    W, H, W, H))
  local per_r, per_c = math.ceil(R / mr), math.ceil(V / mc)
  local unit = rec.unit or (rec.dim == 2 and "column" or "element")
  add(string.format('<text x="%d" y="14" font-size="13" font-weight="600">%s</text>', x0, page.esc(string.format(
    "where the mismatches are: %s x %s (a cell holds up to %d row%s x %d %s%s)", rec.dim == 2 and (R .. " rows") or "1 row",
    V .. " " .. unit .. "s", per_r, per_r == 1 and "" or "s", per_c, unit, per_c == 1 and "" or "s"))))
  -- the background of the cells, then the cells that hold a mismatch
  add(string.format('<rect x="%d" y="%s" width="%d" height="%s" fill="%s" stroke="%s" stroke-width="0.6"/>', x0, f(y0),
    CELLS_W, f(cells_h), c.empty, c.grid))
  for b, n in pairs(counts) do
    local rb, cb = math.floor(b / mc), b % mc
    local size = bin_size(rb, R, mr) * bin_size(cb, V, mc)
    local share = n / size
    local opacity = 0.5 + 0.5 * share ^ (1 / 3)
    add(string.format('<rect x="%s" y="%s" width="%s" height="%s" fill="%s" fill-opacity="%.2f"><title>%d of %d mismatch</title></rect>',
      f(x0 + cb * cw), f(y0 + rb * ch), f(math.max(cw, 1.2)), f(ch), c.fail, opacity, n, size))
  end
  -- per-column and per-row counts of mismatches
  local max_c, max_r = 0, 0
  for b = 0, mc - 1 do max_c = math.max(max_c, col_sum[b]) end
  for b = 0, mr - 1 do max_r = math.max(max_r, row_sum[b]) end
  add(string.format('<text x="%d" y="%d" font-size="10" text-anchor="end">%s</text>', x0 - 4, bars_y + 10, "per"))
  add(string.format('<text x="%d" y="%d" font-size="10" text-anchor="end">%s</text>', x0 - 4, bars_y + 22, unit))
  for b = 0, mc - 1 do
    if col_sum[b] > 0 then
      local h = math.max(1.5, TOP_BARS * col_sum[b] / max_c)
      add(string.format('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>', f(x0 + b * cw), f(bars_y + TOP_BARS - h),
        f(math.max(cw - 0.5, 1.2)), f(h), c.fail))
    end
  end
  add(string.format('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="0.6"/>', x0, x0 + CELLS_W,
    bars_y + TOP_BARS, bars_y + TOP_BARS, c.grid))
  local rx = x0 + CELLS_W + RIGHT_GAP
  for b = 0, mr - 1 do
    if row_sum[b] > 0 then
      local w = math.max(1.5, RIGHT_BARS * row_sum[b] / max_r)
      add(string.format('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>', f(rx), f(y0 + b * ch), f(w),
        f(math.max(ch - 0.5, 1)), c.fail))
    end
  end
  add(string.format('<text x="%d" y="%s" font-size="10">per row</text>', rx, f(y0 - 4)))
  add(string.format('<text x="%d" y="%d" font-size="10" fill="%s">max %d</text>', rx, bars_y + 10, c.muted, max_c))
  -- the CPU kernel's chunk boundaries
  if rec.chunk then
    local k = rec.chunk
    while k < V do
      local x = x0 + CELLS_W * k / V
      add(string.format('<line x1="%s" x2="%s" y1="%d" y2="%s" stroke="%s" stroke-width="1.2" stroke-dasharray="4 3"/>',
        f(x), f(x), bars_y - 10, f(y0 + cells_h), c.mark))
      add(string.format('<text x="%s" y="%d" font-size="10" fill="%s">chunk %d</text>', f(x + 3), bars_y - 3, c.mark, k))
      k = k + rec.chunk
    end
  end
  -- each row's target column
  if rec.target then
    local seen = {}
    for i, t in ipairs(rec.target) do
      if t >= 0 and t < V then
        local rb, cb = math.floor((i - 1) * mr / R), math.floor(t * mc / V)
        local key = rb * mc + cb
        if not seen[key] then
          seen[key] = true
          add(string.format('<circle cx="%s" cy="%s" r="%s" fill="none" stroke="%s" stroke-width="1.3"/>',
            f(x0 + (cb + 0.5) * cw), f(y0 + (rb + 0.5) * ch), f(math.max(2.5, math.min(ch, cw) * 0.42 + 1.5)), c.ink))
        end
      end
    end
  end
  -- axes
  local ty = y0 + cells_h
  for _, v in ipairs(ticks(V, rec.chunk and V > rec.chunk and rec.chunk or nil)) do
    local x = x0 + CELLS_W * (v + 0.5) / V
    add(string.format('<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s"/>', f(x), f(x), f(ty), f(ty + 4), c.ink))
    add(string.format('<text x="%s" y="%s" font-size="10" text-anchor="middle">%d</text>', f(x), f(ty + 15), v))
  end
  add(string.format('<text x="%s" y="%s" font-size="11" text-anchor="middle">%s index (0-based)</text>',
    f(x0 + CELLS_W / 2), f(ty + 34), unit))
  if rec.dim == 2 then
    for _, v in ipairs(ticks(R)) do
      local y = y0 + cells_h * (v + 0.5) / R
      add(string.format('<text x="%d" y="%s" font-size="10" text-anchor="end">%d</text>', x0 - 5, f(y + 3.5), v))
    end
    add(string.format('<text transform="translate(14,%s) rotate(-90)" font-size="11" text-anchor="middle">row</text>',
      f(y0 + cells_h / 2)))
  end
  add("</svg>")
  local legend = { '<div class="legend muted">',
    string.format('<span><i class="swatch" style="background:%s"></i>mismatches (darker: a larger share of the cell)</span>', c.fail),
  }
  if rec.target then legend[#legend + 1] = "<span>&#9675; the row's target column</span>" end
  if rec.chunk then
    legend[#legend + 1] = string.format('<span style="color:%s">&#9478; CPU kernel chunk boundary (every %d columns)</span>',
      c.mark, rec.chunk)
  end
  legend[#legend + 1] = "</div>"
  return table.concat(out, "\n") .. "\n" .. table.concat(legend)
end

return M

-- A histogram as inline SVG: one bar per bin, the count on a log axis (so
-- that one bad element among a million shows), each bar split into the
-- elements that passed (green), were equal (grey) and failed (red), and an
-- optional dashed line where the tolerance lies.
local page = require("gradspec.html.page")

local M = {}

local W, H = 540, 240
local LEFT, RIGHT, TOP, BOTTOM = 58, 16, 30, 62

local function f(x) return string.format("%.1f", x) end

-- spec: {title, xlabel, bins = {{pass =, fail =, equal =}, ...},
-- ticks = {[k] = "label"} (k: the boundary before bin k, or k + 0.5 for the
-- middle of bin k), threshold = boundary index, threshold_label}.
function M.svg(spec)
  local c = page.colour
  local bins = spec.bins
  local nb = #bins
  local pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
  local bw = pw / nb
  local max = 0
  for _, b in ipairs(bins) do max = math.max(max, (b.pass or 0) + (b.fail or 0) + (b.equal or 0)) end
  local top_decade = math.max(1, math.ceil(math.log10(math.max(max, 1)) + 1e-9))
  if 10 ^ top_decade < max then top_decade = top_decade + 1 end
  -- height of a count on the log axis: 0 at the baseline, 1 a sliver above it
  local function y_of(count)
    if count <= 0 then return 0 end
    return ph * (0.06 + 0.94 * math.log10(count) / top_decade)
  end
  local out = {}
  local function add(s) out[#out + 1] = s end
  -- the count drawn in each bin, for tools and specs that read the page
  local totals = {}
  for k, b in ipairs(bins) do totals[k] = (b.pass or 0) + (b.fail or 0) + (b.equal or 0) end
  add(string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
    .. 'class="hist" data-counts="%s">', W, H, W, H, table.concat(totals, ",")))
  add(string.format('<text x="%d" y="16" font-size="13" font-weight="600">%s</text>', LEFT, page.esc(spec.title)))
  -- y grid and ticks: decades
  for d = 0, top_decade do
    local y = TOP + ph - y_of(10 ^ d)
    add(string.format('<line x1="%d" x2="%d" y1="%s" y2="%s" stroke="%s" stroke-width="0.6"/>', LEFT, LEFT + pw, f(y),
      f(y), c.grid))
    local label = d < 3 and tostring(10 ^ d) or ("1e" .. d)
    add(string.format('<text x="%d" y="%s" font-size="10" text-anchor="end">%s</text>', LEFT - 5, f(y + 3.5), label))
  end
  add(string.format('<text transform="translate(14,%s) rotate(-90)" font-size="11" text-anchor="middle">%s</text>',
    f(TOP + ph / 2), "elements (log scale)"))
  -- bars
  for k, b in ipairs(bins) do
    local pass, fail, equal = b.pass or 0, b.fail or 0, b.equal or 0
    local total = pass + fail + equal
    if total > 0 then
      local x = LEFT + (k - 1) * bw + 1
      local h = y_of(total)
      local y = TOP + ph - h
      -- split by share of the bar's count: failed on top, then passed, equal at the bottom
      local parts = { { fail, c.fail }, { pass, c.pass }, { equal, c.equal } }
      for _, p in ipairs(parts) do
        if p[1] > 0 then
          local ph_k = h * p[1] / total
          add(string.format('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s</title></rect>', f(x), f(y),
            f(bw - 2), f(math.max(ph_k, 0.8)), p[2], page.esc(b.title or "") .. ": " .. p[1]))
          y = y + ph_k
        end
      end
      if bw >= 13 then
        add(string.format('<text x="%s" y="%s" font-size="9" text-anchor="middle" fill="%s">%s</text>', f(x + bw / 2 - 1),
          f(TOP + ph - h - 3), c.muted, total >= 10000 and string.format("%.0fk", total / 1000)
            or total >= 1000 and string.format("%.1fk", total / 1000) or tostring(total)))
      end
    end
  end
  -- x axis, ticks and label
  add(string.format('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s"/>', LEFT, LEFT + pw, TOP + ph, TOP + ph, c.ink))
  for k, label in pairs(spec.ticks or {}) do
    local x = LEFT + (k - 1) * bw
    if k % 1 == 0 then
      add(string.format('<line x1="%s" x2="%s" y1="%d" y2="%d" stroke="%s"/>', f(x), f(x), TOP + ph, TOP + ph + 4, c.ink))
    end
    -- labels of single bins (k + 0.5) go on a second line, clear of the boundaries' labels
    local y = TOP + ph + (k % 1 == 0 and 15 or 27)
    add(string.format('<text x="%s" y="%d" font-size="10" text-anchor="middle">%s</text>', f(x), y, page.esc(label)))
  end
  add(string.format('<text x="%s" y="%d" font-size="11" text-anchor="middle">%s</text>', f(LEFT + pw / 2), H - 8,
    page.esc(spec.xlabel)))
  if spec.threshold then
    local x = LEFT + (spec.threshold - 1) * bw
    add(string.format('<line x1="%s" x2="%s" y1="%d" y2="%d" stroke="%s" stroke-width="1.5" stroke-dasharray="5 3"/>',
      f(x), f(x), TOP - 4, TOP + ph, c.ink))
    add(string.format('<text x="%s" y="%d" font-size="10" text-anchor="start">%s</text>', f(x + 3), TOP + 4,
      page.esc(spec.threshold_label or "")))
  end
  add("</svg>")
  return table.concat(out, "\n")
end

-- The same histogram small and bare, for a table row (--html-all draws one
-- per passing comparison, so it must stay light): bars, the tolerance line,
-- and labels at the first, the threshold and the last boundary.
function M.mini(spec)
  local c = page.colour
  local w, h, left, bottom = 236, 58, 4, 14
  local bins = spec.bins
  local nb = #bins
  local bw = (w - 2 * left) / nb
  local ph = h - bottom - 4
  local totals, max = {}, 0
  for k, b in ipairs(bins) do
    totals[k] = (b.pass or 0) + (b.fail or 0) + (b.equal or 0)
    max = math.max(max, totals[k])
  end
  local top = math.max(1, math.log10(math.max(max, 1)))
  local out = { string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" class="hist" '
    .. 'data-counts="%s" role="img"><title>%s</title>', w, h, table.concat(totals, ","), page.esc(spec.title or "")) }
  out[#out + 1] = string.format('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s"/>', left, w - left, 4 + ph, 4 + ph,
    c.grid)
  for k, b in ipairs(bins) do
    if totals[k] > 0 then
      local bh = ph * (0.12 + 0.88 * math.log10(totals[k]) / top)
      local colour = (b.fail or 0) > 0 and c.fail or (b.pass or 0) > 0 and c.pass or c.equal
      out[#out + 1] = string.format('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>', f(left + (k - 1) * bw),
        f(4 + ph - bh), f(math.max(bw - 1, 1)), f(bh), colour)
    end
  end
  for k, label in pairs(spec.ticks or {}) do
    out[#out + 1] = string.format('<text x="%s" y="%d" font-size="9" text-anchor="middle">%s</text>',
      f(left + (k - 1) * bw), h - 2, page.esc(label))
  end
  if spec.threshold then
    local x = left + (spec.threshold - 1) * bw
    out[#out + 1] = string.format('<line x1="%s" x2="%s" y1="0" y2="%d" stroke="%s" stroke-dasharray="3 2"/>', f(x), f(x),
      4 + ph, c.ink)
  end
  out[#out + 1] = "</svg>"
  return table.concat(out)
end

return M

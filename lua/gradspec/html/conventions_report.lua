-- gradspec conventions --html FILE: the table of conventions x backends,
-- then every violation with the input it failed on (its shape, dtype,
-- targets and, when small, its values).
local page = require("gradspec.html.page")

local M = {}

local esc = page.esc
local MAX_SHOWN = 96 -- inputs with more elements are summarised, not listed

local function values_table(logits, target)
  local x = logits:to({ dtype = "f64", device = "cpu" })
  local rows, cols = x.rows, x.cols
  local out = { '<table class="grid mono"><thead><tr><th>row</th><th>target</th>' }
  for j = 0, cols - 1 do out[#out + 1] = string.format("<th>%d</th>", j) end
  out[#out + 1] = "</tr></thead><tbody>"
  local t = target and target:to({ dtype = "f64", device = "cpu" }) or nil
  for i = 0, rows - 1 do
    local ti = t and t:get(i) or nil
    local cells = { string.format('<tr><td class="n">%d</td><td class="n">%s</td>', i, ti and page.num(ti) or "") }
    for j = 0, cols - 1 do
      local v = x:dim() == 2 and x:get(i, j) or x:get(j)
      cells[#cells + 1] = string.format('<td class="n"%s>%s</td>', ti == j and ' style="font-weight:700"' or "",
        esc(page.num(v, 5)))
    end
    out[#out + 1] = table.concat(cells) .. "</tr>"
  end
  out[#out + 1] = "</tbody></table>"
  return table.concat(out, "\n")
end

local function summary(logits)
  local x = logits:to({ dtype = "f64", device = "cpu" }):contiguous()
  local p, n = x:ptr(), x:numel()
  local lo, hi, nonfinite = math.huge, -math.huge, 0
  for k = 0, n - 1 do
    local v = p[k]
    if v ~= v or v == math.huge or v == -math.huge then nonfinite = nonfinite + 1
    else
      if v < lo then lo = v end
      if v > hi then hi = v end
    end
  end
  return string.format("values in [%s, %s]%s", page.num(lo, 4), page.num(hi, 4),
    nonfinite > 0 and string.format(", %d not finite", nonfinite) or "")
end

-- One input of conventions.inputs(), described for a reader.
local function input_html(inp)
  if not inp then return "" end
  local x = inp.logits
  local shape = table.concat(x:shape(), " x ")
  local head = string.format('<div class="muted">logits %s, %s; targets (0-based class per row) in bold</div>', esc(shape),
    esc(x.dtype))
  if x:numel() <= MAX_SHOWN then return head .. values_table(x, inp.target) end
  return head .. '<div class="muted">' .. esc(summary(x)) .. " (too many to list)</div>"
end

-- info: {backends, rows, failures, skips, inputs (conventions.inputs()), command}
function M.render(info)
  local body = { "<h1>gradspec conventions</h1>" }
  local failed_cells, ok_cells, skip_cells = 0, 0, 0
  for _, r in ipairs(info.rows) do
    for _, b in ipairs(info.backends) do
      local s = r.cells[b]
      if s == "FAIL" then failed_cells = failed_cells + 1
      elseif s == "skip" then skip_cells = skip_cells + 1
      else ok_cells = ok_cells + 1 end
    end
  end
  body[#body + 1] = page.counts({ fail = failed_cells, pass = ok_cells, skip = skip_cells },
    { "cells violated", "cells kept", "cells skipped" })
  body[#body + 1] = page.meta({
    { "command", "<code>" .. esc(info.command or "gradspec conventions") .. "</code>" },
    { "version", "gradspec " .. esc(require("gradspec").version) },
    { "backends", esc(table.concat(info.backends, ", ")) },
    { "started", esc(os.date("!%Y-%m-%d %H:%M:%S UTC")) },
  })
  -- the table: one row per convention, one column per backend
  local t = { "<h2>Conventions x backends</h2>", '<table class="grid"><thead><tr><th>op</th><th>convention</th>' }
  for _, b in ipairs(info.backends) do t[#t + 1] = "<th>" .. esc(b) .. "</th>" end
  t[#t + 1] = "</tr></thead><tbody>"
  for _, r in ipairs(info.rows) do
    local cells = { string.format('<tr><td class="mono">%s</td><td>%s</td>', esc(r.conv.op), esc(r.conv.name)) }
    for _, b in ipairs(info.backends) do
      local s = r.cells[b]
      local class = s == "FAIL" and "fail" or s == "skip" and "skip" or "pass"
      cells[#cells + 1] = string.format('<td class="%s">%s</td>', class, esc(s))
    end
    t[#t + 1] = table.concat(cells) .. "</tr>"
  end
  t[#t + 1] = "</tbody></table>"
  local inputs_by_name = {}
  for _, inp in ipairs(info.inputs or {}) do inputs_by_name[inp.name] = inp end
  -- the table first (it fits on a screen and shows which cells fail), then each violation
  body[#body + 1] = table.concat(t, "\n")
  if #info.failures > 0 then
    body[#body + 1] = string.format("<h2>Violations (%d)</h2>", #info.failures)
    for _, f in ipairs(info.failures) do
      body[#body + 1] = string.format('<div class="card"><h3>%s %s: %s</h3><div class="muted">backend <b>%s</b>, '
        .. "input <b>%s</b></div><pre>%s</pre>%s</div>", page.badge("fail"), esc(f.conv.op), esc(f.conv.name),
        esc(f.backend), esc(f.input), esc(f.why), input_html(inputs_by_name[f.input]))
    end
  end
  if #info.skips > 0 then
    body[#body + 1] = "<h2>Skipped</h2><ul>"
    for _, why in ipairs(info.skips) do body[#body + 1] = "<li>" .. esc(why) .. "</li>" end
    body[#body + 1] = "</ul>"
  end
  body[#body + 1] = "<h2>Inputs every convention is checked on</h2><ul>"
  for _, inp in ipairs(info.inputs or {}) do
    body[#body + 1] = string.format("<li>%s <span class=\"muted\">(%s, %s)</span></li>", esc(inp.name),
      esc(table.concat(inp.logits:shape(), " x ")), esc(inp.logits.dtype))
  end
  body[#body + 1] = "</ul>"
  local title = string.format("gradspec conventions: %d violation%s", #info.failures, #info.failures == 1 and "" or "s")
  return page.document(title, table.concat(body, "\n"))
end

function M.write(path, info) page.write(path, M.render(info)) end

return M

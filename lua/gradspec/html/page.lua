-- The frame every HTML report shares: one self-contained document (inline
-- CSS, inline SVG, no script, nothing fetched), escaping for text from specs
-- and tensors, and one set of colours for pass, fail and skip everywhere.
local M = {}

M.colour = {
  pass = "#1a7f37", pass_bg = "#dafbe1",
  fail = "#cf222e", fail_bg = "#ffebe9",
  skip = "#9a6700", skip_bg = "#fff8c5",
  equal = "#8c959f", mark = "#0969da", ink = "#1f2328", muted = "#59636e", grid = "#d0d7de", empty = "#f6f8fa",
}

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- Text for HTML content and attribute values: the five special characters
-- escaped, control characters (which HTML forbids) and bytes that are not
-- UTF-8 replaced.
function M.esc(s)
  s = tostring(s == nil and "" or s)
  s = s:gsub("[%z\1-\8\11\12\14-\31\127]", "\239\191\189")
  if s:find("[\128-\255]") then s = M.utf8_clean(s) end
  return (s:gsub("[&<>\"']", ESC))
end

-- Invalid UTF-8 bytes become U+FFFD (the JSON report's rule), so that the
-- page decodes as UTF-8.
M.utf8_clean = require("gradspec.json").utf8_clean

-- Numbers as a reader wants them: short, and nan/inf spelt out.
function M.num(x, digits)
  if type(x) ~= "number" then return tostring(x) end
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  if x == math.floor(x) and math.abs(x) < 1e15 then return string.format("%d", x) end
  return string.format("%." .. (digits or 4) .. "g", x)
end

function M.seconds(t)
  if not t then return "" end
  if t < 1 then return string.format("%.1f ms", t * 1000) end
  return string.format("%.2f s", t)
end

local LABEL = { pass = "pass", fail = "FAIL", skip = "skip" }
function M.badge(status)
  return string.format('<span class="badge %s">%s</span>', M.esc(status), M.esc(LABEL[status] or status))
end

local CSS = [[
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: %ink%;
  margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 1px solid %grid%; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
h4 { font-size: 14px; margin: 10px 0 2px; }
code, pre, .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: %empty%; border: 1px solid %grid%; border-radius: 6px; padding: 8px 10px; overflow-x: auto;
  white-space: pre-wrap; margin: 6px 0; }
.counts { display: flex; gap: 10px; margin: 10px 0 14px; }
.count { border-radius: 8px; padding: 6px 14px; font-size: 16px; font-weight: 600; }
.count.pass { background: %pass_bg%; color: %pass%; } .count.fail { background: %fail_bg%; color: %fail%; }
.count.skip { background: %skip_bg%; color: %skip%; }
.badge { display: inline-block; min-width: 38px; text-align: center; border-radius: 4px; padding: 0 6px;
  font-size: 12px; font-weight: 700; }
.badge.pass { background: %pass_bg%; color: %pass%; } .badge.fail { background: %fail%; color: #fff; }
.badge.skip { background: %skip_bg%; color: %skip%; }
table { border-collapse: collapse; }
table.meta td { padding: 1px 14px 1px 0; vertical-align: top; } table.meta td:first-child { color: %muted%; }
table.grid th, table.grid td { border: 1px solid %grid%; padding: 3px 8px; text-align: left; vertical-align: top; }
table.grid th { background: %empty%; font-weight: 600; }
table.grid td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.pass { background: %pass_bg%; color: %pass%; font-weight: 600; }
td.fail { background: %fail_bg%; color: %fail%; font-weight: 700; }
td.skip { background: %skip_bg%; color: %skip%; }
td.none { color: %muted%; }
.card { border: 1px solid %grid%; border-left: 5px solid %fail%; border-radius: 6px; padding: 10px 14px;
  margin: 14px 0; }
.card.pass { border-left-color: %pass%; }
.card h3 { margin-top: 2px; }
.muted { color: %muted%; }
.rerun { display: block; background: #f0f6ff; border: 1px solid #b6d4fe; border-radius: 6px; padding: 6px 10px;
  margin: 6px 0; overflow-x: auto; white-space: nowrap; }
.compare { border-top: 1px dashed %grid%; margin-top: 12px; padding-top: 8px; }
.where { margin: 4px 0 8px 0; padding-left: 18px; }
.where li { font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
svg text { font-family: system-ui, "DejaVu Sans", sans-serif; fill: %ink%; }
details > summary { cursor: pointer; margin: 4px 0; }
.legend span { margin-right: 14px; white-space: nowrap; }
.swatch { display: inline-block; width: 11px; height: 11px; vertical-align: -1px; margin-right: 4px; }
]]

function M.css()
  return (CSS:gsub("%%(%w+)%%", function(k) return M.colour[k] or ("%" .. k .. "%") end))
end

-- The whole document around body (already HTML).
function M.document(title, body)
  return table.concat({
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    "<title>", M.esc(title), "</title>\n<style>\n", M.css(), "</style>\n</head>\n<body>\n<main>\n",
    body, "\n</main>\n</body>\n</html>\n",
  })
end

-- The pass/fail/skip counts as coloured boxes (no skip box when c.skip is
-- nil); words replaces "failed", "passed", "skipped".
function M.counts(c, words)
  words = words or { "failed", "passed", "skipped" }
  local skip = c.skip and string.format('<span class="count skip">%d %s</span>', c.skip, M.esc(words[3])) or ""
  return string.format('<div class="counts"><span class="count fail">%d %s</span>'
    .. '<span class="count pass">%d %s</span>%s</div>', c.fail or 0, M.esc(words[1]), c.pass or 0, M.esc(words[2]), skip)
end

-- A two-column table of {label, html} rows.
function M.meta(rows)
  local out = { '<table class="meta">' }
  for _, r in ipairs(rows) do
    out[#out + 1] = string.format("<tr><td>%s</td><td>%s</td></tr>", M.esc(r[1]), r[2])
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

-- Writes text to path, or raises naming the path.
function M.write(path, text)
  local f, err = io.open(path, "w")
  if not f then error("cannot write " .. tostring(path) .. ": " .. tostring(err), 0) end
  f:write(text)
  f:close()
end

-- Shell quoting for the command lines a report shows.
function M.shell_quote(s)
  s = tostring(s)
  if s:match("^[%w_%-%./=:,+@]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

return M

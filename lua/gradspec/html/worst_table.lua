-- The worst elements of one comparison as an HTML table: where, both
-- values, the error in tolerance units and in ulps, and what the place is
-- (the row's target column, a chunk boundary, the row's last columns).
local page = require("gradspec.html.page")
local measure = require("gradspec.html.measure")

local M = {}

-- What is special about column j of row i, or "".
local function place(rec, i, j)
  local notes = {}
  if rec.target and rec.target[i + 1] == j then notes[#notes + 1] = "target column" end
  if rec.chunk and (j % rec.chunk == 0 or j % rec.chunk == rec.chunk - 1) and j > 0 and j < rec.cols - 1 then
    notes[#notes + 1] = j % rec.chunk == 0 and "first of a chunk" or "last of a chunk"
  end
  if rec.dim == 2 and rec.cols > 16 and j >= rec.cols - 8 then notes[#notes + 1] = "last 8 columns" end
  return table.concat(notes, ", ")
end

function M.html(rec)
  local w = rec.worst or {}
  if #w == 0 then return "" end
  local esc, num = page.esc, page.num
  local out = {
    '<table class="grid"><thead><tr><th>#</th><th>index</th>',
    string.format("<th>%s</th><th>%s</th>", esc(rec.actual_name or "actual"), esc(rec.expected_name or "expected")),
    "<th>|a &#8722; e|</th><th>tolerance units</th>",
    string.format("<th>ulps (%s)</th><th>place</th></tr></thead><tbody>", esc(rec.ulp_dtype)),
  }
  for n = 1, #w / 3 do
    local k, a, e = w[3 * n - 2], w[3 * n - 1], w[3 * n]
    local i, j = 0, k
    if rec.dim == 2 then i, j = math.floor(k / rec.cols), k % rec.cols end
    local index = rec.dim == 2 and string.format("[%d, %d]", i, j) or rec.dim == 1 and string.format("[%d]", k) or "[]"
    local r, u = measure.element(rec, a, e)
    local failed = not (r <= 1)
    out[#out + 1] = string.format(
      '<tr><td class="n">%d</td><td class="mono">%s</td><td class="n mono">%s</td><td class="n mono">%s</td>'
        .. '<td class="n mono">%s</td><td class="n %s">%s</td><td class="n">%s</td><td>%s</td></tr>',
      n, esc(index), esc(num(a, 9)), esc(num(e, 9)), esc(num(math.abs(a - e), 3)), failed and "fail" or "pass",
      esc(num(r, 3)), esc(num(u, 3)), esc(place(rec, i, j)))
  end
  out[#out + 1] = "</tbody></table>"
  return table.concat(out, "\n")
end

return M

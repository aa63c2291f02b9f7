-- Printing a tensor the way a familiar tensor library does: values first,
-- then shape, dtype and device; the middle of long dimensions is elided.
local M = {}

local EDGE, THRESHOLD = 3, 1000

local function fmt_number(x, style)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  return string.format(style, x)
end

-- One format for the whole tensor, so that columns line up.
local function pick_style(values, is_int)
  if is_int then return "%d" end
  local lo, hi, all_int = math.huge, 0, true
  for _, x in ipairs(values) do
    if x == x and x ~= math.huge and x ~= -math.huge then
      local a = math.abs(x)
      if a > hi then hi = a end
      if a > 0 and a < lo then lo = a end
      if x ~= math.floor(x) then all_int = false end
    end
  end
  if all_int and hi < 1e8 then return "%.0f." end
  if hi >= 1e5 or (lo < 1e-4 and lo > 0) then return "%.4e" end
  return "%.4f"
end

local function indices(n, elide)
  local idx = {}
  if elide and n > 2 * EDGE then
    for i = 0, EDGE - 1 do idx[#idx + 1] = i end
    idx[#idx + 1] = false
    for i = n - EDGE, n - 1 do idx[#idx + 1] = i end
  else
    for i = 0, n - 1 do idx[#idx + 1] = i end
  end
  return idx
end

function M.format(t)
  local h = t:to("cpu")
  local elide = h:numel() > THRESHOLD
  local nd = h:dim()
  local ridx = nd == 2 and indices(h.rows, elide) or { 0 }
  local cidx = indices(h.cols, elide)
  local get = function(r, c)
    if nd == 2 then return h:get(r, c) end
    if nd == 1 then return h:get(c) end
    return h:get()
  end
  local values = {}
  for _, r in ipairs(ridx) do
    for _, c in ipairs(cidx) do
      if r and c then values[#values + 1] = get(r, c) end
    end
  end
  local style = pick_style(values, h._dt.int)
  local width = 0
  local cells = {}
  for i, x in ipairs(values) do
    cells[i] = fmt_number(x, style)
    width = math.max(width, #cells[i])
  end
  local k = 0
  local function row_text(r)
    local parts = {}
    for _, c in ipairs(cidx) do
      if c then
        k = k + 1
        parts[#parts + 1] = string.rep(" ", width - #cells[k]) .. cells[k]
      else
        parts[#parts + 1] = "..."
      end
    end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  local body
  if nd == 0 then
    body = cells[1]
  elseif nd == 1 then
    body = row_text(0)
  else
    local lines = {}
    for _, r in ipairs(ridx) do
      lines[#lines + 1] = r and row_text(r) or "..."
    end
    body = "[" .. table.concat(lines, ",\n        ") .. "]"
  end
  local shape = "{" .. table.concat(t:shape(), ", ") .. "}"
  local extra = ""
  if not t:is_contiguous() then extra = ", stride=" .. t.stride end
  return string.format("tensor(%s, shape=%s, dtype=%s, device=%s%s)", body, shape, t.dtype, t.device, extra)
end

return M

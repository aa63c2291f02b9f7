-- gradspec mutate --html FILE: the kill matrix, mutants x spec files. Each
-- cell counts the its of that file that failed with the mutant switched on
-- (green: the file kills it); a row with no kill is a survivor, listed
-- first. Also reads the JUnit file each run of the suite writes.
local page = require("gradspec.html.page")

local M = {}

local esc = page.esc

local UNXML = { lt = "<", gt = ">", quot = '"', apos = "'", amp = "&" }
local function unxml(s) return (s:gsub("&(%a+);", function(e) return UNXML[e] or ("&" .. e .. ";") end)) end

-- A JUnit report of gradspec run (report.junit) as {files = {path, ...},
-- by_file = {path = {tests, failed, names = failing its}}}, or nil when the
-- file cannot be read.
function M.read_junit(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local files, by_file = {}, {}
  local file, case = nil, nil
  for line in f:lines() do
    local suite = line:match('^%s*<testsuite name="([^"]*)"')
    if suite then
      file = unxml(suite)
      if not by_file[file] then
        by_file[file] = { tests = 0, failed = 0, names = {} }
        files[#files + 1] = file
      end
    end
    local name = line:match('^%s*<testcase .- name="([^"]*)"')
    if name and file then
      case = unxml(name)
      by_file[file].tests = by_file[file].tests + 1
    end
    if line:match("^%s*<failure ") and file and case then
      local e = by_file[file]
      e.failed = e.failed + 1
      e.names[#e.names + 1] = case
    end
  end
  f:close()
  return { files = files, by_file = by_file }
end

local function short(path) return (path:gsub("^.*/", ""):gsub("%.lua$", "")) end

-- info: {title, command, files (the baseline's spec files), rows = {{label,
-- what, dead, killer, note, junit = read_junit()}}, seconds}
function M.render(info)
  local rows, killed = {}, 0
  for i, r in ipairs(info.rows) do
    rows[i] = r
    if r.dead then killed = killed + 1 end
  end
  -- survivors first, each group in the order the mutants ran
  local order = {}
  for i, r in ipairs(rows) do order[r] = i end
  table.sort(rows, function(a, b)
    if a.dead ~= b.dead then return not a.dead end
    return order[a] < order[b]
  end)
  local body = { "<h1>" .. esc(info.title or "gradspec mutate") .. "</h1>" }
  body[#body + 1] = page.counts({ fail = #rows - killed, pass = killed }, { "survived", "killed" })
  body[#body + 1] = page.meta({
    { "command", "<code>" .. esc(info.command or "gradspec mutate") .. "</code>" },
    { "version", "gradspec " .. esc(require("gradspec").version) },
    { "kill rate", esc(string.format("%d of %d (%.0f%%)", killed, #rows, #rows > 0 and 100 * killed / #rows or 0)) },
    { "duration", esc(page.seconds(info.seconds)) },
  })
  local files = info.files or {}
  local t = { "<h2>Kill matrix: mutants x spec files</h2>",
    '<p class="muted">Each cell: the its of that spec file that failed with the mutant on (of the file\'s its). '
      .. "Hover a cell for their names.</p>",
    '<table class="grid"><thead><tr><th>result</th><th>mutant</th>' }
  for _, f in ipairs(files) do t[#t + 1] = string.format('<th title="%s">%s</th>', esc(f), esc(short(f))) end
  t[#t + 1] = "<th>what it breaks / killed by</th></tr></thead><tbody>"
  for _, r in ipairs(rows) do
    local cells = { string.format('<tr><td>%s</td><td class="mono">%s</td>',
      r.dead and '<span class="badge pass">killed</span>' or '<span class="badge fail">SURVIVED</span>', esc(r.label)) }
    for _, f in ipairs(files) do
      local e = r.junit and r.junit.by_file[f]
      if not e then
        cells[#cells + 1] = '<td class="none" title="no result">&#8211;</td>'
      elseif e.failed > 0 then
        local names = {}
        for k = 1, math.min(#e.names, 6) do names[k] = e.names[k] end
        if #e.names > 6 then names[#names + 1] = string.format("... %d more", #e.names - 6) end
        cells[#cells + 1] = string.format('<td class="pass n" title="%s">%d/%d</td>', esc(table.concat(names, "\n")),
          e.failed, e.tests)
      else
        cells[#cells + 1] = string.format('<td class="none n">0/%d</td>', e.tests)
      end
    end
    local note = r.dead and ("killed by: " .. tostring(r.killer or "?")) or (r.note or r.what or "")
    cells[#cells + 1] = string.format("<td>%s<br><span class=\"muted\">%s</span></td>", esc(r.what or ""),
      r.dead and esc(note) or ('<b style="color:' .. page.colour.fail .. '">' .. esc(note) .. "</b>"))
    t[#t + 1] = table.concat(cells) .. "</tr>"
  end
  t[#t + 1] = "</tbody></table>"
  body[#body + 1] = table.concat(t, "\n")
  local title = string.format("gradspec mutate: %d of %d killed", killed, #rows)
  return page.document(title, table.concat(body, "\n"))
end

function M.write(path, info) page.write(path, M.render(info)) end

return M

-- gradspec run --html FILE: the run as one self-contained page. Failures
-- first, each with its message, the command that reruns it alone with its
-- seed, and the pictures of every comparison it failed; then passing
-- comparisons (--html-all); then every file and it with its status and time.
local page = require("gradspec.html.page")
local comparison = require("gradspec.html.comparison")
local serial = require("gradspec.serial")

local M = {}

local esc = page.esc

-- The executable as the user would type it from here.
local function exe_path()
  local ffi = require("ffi")
  local exe = ffi.string(require("gradspec.ffi").C.gs_self_exe())
  local pipe = io.popen("pwd 2>/dev/null")
  local cwd = pipe and pipe:read("*l")
  if pipe then pipe:close() end
  if cwd and exe:sub(1, #cwd + 1) == cwd .. "/" then
    exe = exe:sub(#cwd + 2)
    if not exe:find("/") then exe = "./" .. exe end
  end
  return exe
end

-- The one-line command that reruns just this it, with its seed.
function M.rerun_line(r, info, exe)
  local parts = { page.shell_quote(exe or exe_path()), "run", page.shell_quote(r.file or "?"), "--filter",
    page.shell_quote(r.name), "--seed", string.format("%.17g", r.seed or info.seed or 1234) }
  for _, f in ipairs(info.load or {}) do
    parts[#parts + 1] = "--load"
    parts[#parts + 1] = page.shell_quote(f)
  end
  return table.concat(parts, " ")
end

local function device()
  local cpu = nil
  local f = io.open("/proc/cpuinfo", "r")
  if f then
    for line in f:lines() do
      cpu = line:match("^model name%s*:%s*(.-)%s*$")
      if cpu then break end
    end
    f:close()
  end
  local ok, cores = pcall(function() return tonumber(require("gradspec.ffi").C.gs_cpu_count()) end)
  local text = (cpu or "unknown CPU") .. (ok and string.format(", %d cores", cores) or "")
  local cok, why = pcall(function() return require("gradspec.ops").cuda_unavailable_reason() end)
  if cok then text = text .. (why and ("; no CUDA device (" .. tostring(why) .. ")") or "; CUDA device available") end
  return text
end

local function decoded(r)
  local out = {}
  for _, line in ipairs(r.compares or {}) do
    local rec = serial.decode(line)
    if rec then out[#out + 1] = rec end
  end
  -- failed comparisons first, in the order they ran
  local failed, passed = {}, {}
  for _, rec in ipairs(out) do
    if rec.failed then failed[#failed + 1] = rec else passed[#passed + 1] = rec end
  end
  for _, rec in ipairs(passed) do failed[#failed + 1] = rec end
  return failed
end

local function display_name(r)
  if r["repeat"] then return string.format("%s (run %d, seed %s)", r.name, r["repeat"], tostring(r.seed)) end
  return r.name
end

local function failure_card(r, info, exe)
  local out = { '<div class="card">' }
  out[#out + 1] = string.format("<h3>%s %s</h3>", page.badge("fail"), esc(display_name(r)))
  out[#out + 1] = string.format('<div class="muted">%s:%d &#183; seed %s &#183; %s</div>', esc(r.file or "?"),
    r.line or 0, esc(page.num(r.seed or info.seed)), esc(page.seconds(r.time)))
  out[#out + 1] = "<pre>" .. esc(r.message) .. "</pre>"
  out[#out + 1] = '<div class="muted">rerun just this it:</div><code class="rerun">' .. esc(M.rerun_line(r, info, exe))
    .. "</code>"
  for _, rec in ipairs(decoded(r)) do out[#out + 1] = comparison.html(rec) end
  if r.compares_left_out then
    out[#out + 1] = string.format('<p class="muted">%d more comparison%s of this it not kept (at most %d per it)</p>',
      r.compares_left_out, r.compares_left_out == 1 and "" or "s", require("gradspec.html.capture").MAX_PER_IT)
  end
  out[#out + 1] = "</div>"
  return table.concat(out, "\n")
end

local function passing_card(r)
  local recs = decoded(r)
  if #recs == 0 then return nil end
  local out = { '<div class="card pass">' }
  out[#out + 1] = string.format('<h3>%s %s</h3><div class="muted">%s:%d</div>', page.badge(r.status),
    esc(display_name(r)), esc(r.file or "?"), r.line or 0)
  out[#out + 1] = comparison.rows_header()
  for _, rec in ipairs(recs) do out[#out + 1] = comparison.row(rec) end
  out[#out + 1] = "</tbody></table></div>"
  return table.concat(out, "\n")
end

local RANK = { fail = 1, pass = 2, skip = 3 }

-- Every file and it: files with failures first, failures first within a file.
local function files_section(results, state)
  local files, by = {}, {}
  for i, r in ipairs(results) do
    local f = r.file or "?"
    if not by[f] then
      by[f] = { file = f, its = {}, pass = 0, fail = 0, skip = 0, time = 0, first = i }
      files[#files + 1] = by[f]
    end
    local e = by[f]
    e.its[#e.its + 1] = { r = r, i = i }
    e[r.status] = (e[r.status] or 0) + 1
    e.time = e.time + (r.time or 0)
  end
  table.sort(files, function(a, b)
    if (a.fail > 0) ~= (b.fail > 0) then return a.fail > 0 end
    return a.first < b.first
  end)
  local out = { "<h2>Spec files</h2>",
    '<table class="grid"><thead><tr><th>status</th><th>file</th><th>failed</th><th>passed</th><th>skipped</th><th>time</th></tr></thead><tbody>' }
  for _, e in ipairs(files) do
    local status = e.fail > 0 and "fail" or e.pass > 0 and "pass" or "skip"
    out[#out + 1] = string.format('<tr><td>%s</td><td class="mono">%s</td><td class="n%s">%d</td><td class="n">%d</td>'
      .. '<td class="n">%d</td><td class="n">%s</td></tr>', page.badge(status), esc(e.file), e.fail > 0 and " fail" or "",
      e.fail, e.pass, e.skip, esc(page.seconds((state.file_times or {})[e.file] or e.time)))
  end
  out[#out + 1] = "</tbody></table>"
  out[#out + 1] = "<h2>Every it</h2>"
  for _, e in ipairs(files) do
    table.sort(e.its, function(a, b)
      local ra, rb = RANK[a.r.status] or 4, RANK[b.r.status] or 4
      if ra ~= rb then return ra < rb end
      return a.i < b.i
    end)
    out[#out + 1] = string.format("<details%s><summary>%s <span class=\"mono\">%s</span> "
      .. '<span class="muted">(%d failed, %d passed, %d skipped)</span></summary>', e.fail > 0 and " open" or "",
      page.badge(e.fail > 0 and "fail" or e.pass > 0 and "pass" or "skip"), esc(e.file), e.fail, e.pass, e.skip)
    out[#out + 1] = '<table class="grid"><thead><tr><th>status</th><th>it</th><th>line</th><th>time</th><th>note</th></tr></thead><tbody>'
    for _, x in ipairs(e.its) do
      local r = x.r
      local note = r.status == "skip" and tostring(r.reason or "")
        or r.status == "fail" and tostring(r.message or ""):match("[^\n]*") or ""
      out[#out + 1] = string.format('<tr><td>%s</td><td>%s</td><td class="n">%d</td><td class="n">%s</td><td>%s</td></tr>',
        page.badge(r.status), esc(display_name(r)), r.line or 0, esc(page.seconds(r.time)), esc(note))
    end
    out[#out + 1] = "</tbody></table></details>"
  end
  return table.concat(out, "\n")
end

-- The page as text. info: args (gradspec run's arguments), seed, load,
-- started (os.time()), wall (seconds), jobs, shuffle_seed, all (--html-all).
function M.render(results, counts, state, notes, info)
  state, info = state or {}, info or {}
  local gs_version = require("gradspec").version
  local args = { "gradspec", "run" }
  for _, a in ipairs(info.args or {}) do args[#args + 1] = page.shell_quote(a) end
  local body = {}
  body[#body + 1] = "<h1>gradspec run</h1>"
  body[#body + 1] = page.counts(counts)
  local seed = page.num(info.seed or 1234)
  if info.shuffle_seed then seed = seed .. string.format(" (shuffled with --shuffle-seed %d)", info.shuffle_seed) end
  body[#body + 1] = page.meta({
    { "command", "<code>" .. esc(table.concat(args, " ")) .. "</code>" },
    { "seed", esc(seed) },
    { "version", "gradspec " .. esc(gs_version) },
    { "device", esc(device()) },
    { "started", esc(os.date("!%Y-%m-%d %H:%M:%S UTC", info.started or os.time())) },
    { "duration", esc(page.seconds(info.wall)) .. (info.jobs and info.jobs > 1 and esc(" with -j " .. info.jobs) or "") },
  })
  for _, n in ipairs(notes or {}) do body[#body + 1] = '<p class="muted">' .. esc(n.text) .. "</p>" end
  local failures = {}
  for _, r in ipairs(results) do
    if r.status == "fail" then failures[#failures + 1] = r end
  end
  if #failures > 0 then
    body[#body + 1] = string.format("<h2>Failures (%d)</h2>", #failures)
    local exe = exe_path()
    for _, r in ipairs(failures) do body[#body + 1] = failure_card(r, info, exe) end
  end
  if info.all then
    local cards = {}
    for _, r in ipairs(results) do
      if r.status ~= "fail" then cards[#cards + 1] = passing_card(r) end
    end
    body[#body + 1] = "<h2>Passing comparisons: how much margin the tolerances leave</h2>"
    body[#body + 1] = #cards > 0 and table.concat(cards, "\n") or '<p class="muted">no comparison in a passing it</p>'
  end
  body[#body + 1] = files_section(results, state)
  local title = string.format("gradspec run: %d failed, %d passed, %d skipped", counts.fail, counts.pass, counts.skip)
  return page.document(title, table.concat(body, "\n"))
end

function M.write(path, results, counts, state, notes, info)
  page.write(path, M.render(results, counts, state, notes, info))
end

return M

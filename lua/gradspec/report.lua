-- Turning results into text, TAP 13 or JUnit XML. Every format ends the run
-- with "N passed, N failed, N skipped" alone on a line.
local json = require("gradspec.json")

local M = {}

local function summary_line(c)
  return string.format("%d passed, %d failed, %d skipped", c.pass, c.fail, c.skip)
end
M.summary_line = summary_line

-- Lines that go just before the summary line: a run that was interrupted,
-- a run in which nothing ran. state is what runner.run returned beside the
-- results.
function M.notes(counts, state)
  local notes = {}
  if state and state.shuffle_seed then
    notes[#notes + 1] = { kind = "shuffle", text = string.format(
      "shuffled: files and its ran in a random order; the same order again: --shuffle-seed %d", state.shuffle_seed) }
  end
  if state and state.interrupted and state.interrupted ~= 0 then
    local text = "interrupted: " .. tostring(state.signal) .. " stopped the run"
    if state.file then text = text .. " in " .. state.file end
    if (state.not_run or 0) > 0 then
      text = text .. string.format("; %d spec file%s not run", state.not_run, state.not_run == 1 and "" or "s")
    end
    notes[#notes + 1] = { kind = "interrupted", text = text }
  elseif counts.pass + counts.fail == 0 then
    notes[#notes + 1] = { kind = "nothing", text = "nothing ran: every it was filtered out or skipped" }
  end
  return notes
end

local function ms(t) return t and string.format("%.1f ms", t * 1000) or "" end

-- An it's name as reports show it: a --repeat run adds which run and its
-- seed, so that each run is a test case of its own and can be replayed.
local function display_name(r)
  if r["repeat"] then return string.format("%s (run %d, seed %s)", r.name, r["repeat"], tostring(r.seed)) end
  return r.name
end
M.display_name = display_name

-- Its that passed in some --repeat runs and failed in others, in the order
-- they first ran: {name, file, line, runs, failed, seeds = the failing
-- runs' seeds}.
function M.flaky(results)
  local by_key, order = {}, {}
  for _, r in ipairs(results) do
    if r["repeat"] and (r.status == "pass" or r.status == "fail") then
      local key = tostring(r.file) .. "\0" .. tostring(r.line) .. "\0" .. r.name
      local e = by_key[key]
      if not e then
        e = { name = r.name, file = r.file, line = r.line, runs = 0, failed = 0, seeds = {} }
        by_key[key], order[#order + 1] = e, key
      end
      e.runs = e.runs + 1
      if r.status == "fail" then
        e.failed = e.failed + 1
        e.seeds[#e.seeds + 1] = r.seed
      end
    end
  end
  local out = {}
  for _, key in ipairs(order) do
    local e = by_key[key]
    if e.failed > 0 and e.failed < e.runs then out[#out + 1] = e end
  end
  return out
end

local function flaky_lines(flaky)
  local lines = {}
  for _, e in ipairs(flaky) do
    local seeds = {}
    for i, sd in ipairs(e.seeds) do seeds[i] = tostring(sd) end
    lines[#lines + 1] = string.format("%s (%s:%d): failed %d of %d runs (--seed %s)", e.name, tostring(e.file),
      e.line or 0, e.failed, e.runs, table.concat(seeds, ", "))
  end
  return lines
end

-- The k its that took longest, slowest first (skipped its have no time).
function M.slowest(results, k)
  local timed = {}
  for i, r in ipairs(results) do
    if r.time then timed[#timed + 1] = { r = r, i = i } end
  end
  table.sort(timed, function(a, b)
    if a.r.time ~= b.r.time then return a.r.time > b.r.time end
    return a.i < b.i
  end)
  local out = {}
  for i = 1, math.min(k or 0, #timed) do out[i] = timed[i].r end
  return out
end

local function slowest_lines(results, k)
  local lines = {}
  for _, r in ipairs(M.slowest(results, k)) do
    lines[#lines + 1] = string.format("%10s  %s (%s:%d)", ms(r.time), display_name(r), tostring(r.file), r.line or 0)
  end
  return lines
end

-- Progress for the text format: one line per it with -v, else one per file.
-- A file's line is written once its last record is in (the runner's
-- "file_done"), so that it comes before the next file's own output.
function M.text_progress(verbose, out)
  local file, counts, spent = nil, nil, 0
  local function flush_file()
    if file and not verbose then
      out:write(string.format("%s: %d passed, %d failed, %d skipped (%.2f s)\n", file, counts.pass,
        counts.fail, counts.skip, spent))
      out:flush()
    end
    file = nil
  end
  return function(rec)
    if rec.ev == "file_done" then
      if rec.file == file then flush_file() end
      return
    end
    if rec.ev == "list" then
      out:write(string.format("%s:%d: %s %s\n", rec.file, rec.line or 0, rec.name, rec.tags or ""))
      return
    end
    if rec.ev ~= "result" then return end
    if rec.file ~= file then
      flush_file()
      file, counts, spent = rec.file, { pass = 0, fail = 0, skip = 0 }, 0
      if verbose then out:write(rec.file, "\n") end
    end
    counts[rec.status] = counts[rec.status] + 1
    spent = spent + (rec.time or 0)
    if verbose then
      local label = ({ pass = "PASS", fail = "FAIL", skip = "SKIP" })[rec.status]
      local extra = rec.status == "skip" and (" (" .. tostring(rec.reason) .. ")")
        or (rec.time and (" (" .. ms(rec.time) .. ")") or "")
      out:write(string.format("  %s  %s%s\n", label, display_name(rec), extra))
      for _, w in ipairs(rec.warnings or {}) do out:write("        warning: ", w, "\n") end
      for _, n in ipairs(rec.notes or {}) do out:write("        ", n, "\n") end
      out:flush()
    end
  end, flush_file
end

-- opts: slowest = K (list the K slowest its).
function M.text_summary(results, counts, out, notes, opts)
  opts = opts or {}
  local failures, warnings, reasons, order = {}, {}, {}, {}
  local partial, partial_order = {}, {}
  for _, r in ipairs(results) do
    if r.status == "fail" then failures[#failures + 1] = r end
    if r.status == "skip" then
      local reason = tostring(r.reason)
      if not reasons[reason] then order[#order + 1] = reason; reasons[reason] = 0 end
      reasons[reason] = reasons[reason] + 1
    end
    for _, w in ipairs(r.warnings or {}) do warnings[#warnings + 1] = r.name .. ": " .. w end
    for _, n in ipairs(r.notes or {}) do
      if not partial[n] then partial_order[#partial_order + 1] = n; partial[n] = 0 end
      partial[n] = partial[n] + 1
    end
  end
  if #order > 0 then
    out:write("\nSkipped:\n")
    for _, reason in ipairs(order) do out:write(string.format("  %d: %s\n", reasons[reason], reason)) end
  end
  if #partial_order > 0 then
    out:write("\nSkipped for some backends (the its ran on the others):\n")
    for _, n in ipairs(partial_order) do out:write(string.format("  %d: %s\n", partial[n], n)) end
  end
  if #warnings > 0 then
    out:write("\nWarnings:\n")
    for _, w in ipairs(warnings) do out:write("  ", w, "\n") end
  end
  if #failures > 0 then
    out:write("\nFailures:\n")
    for i, r in ipairs(failures) do
      out:write(string.format("\n%d) %s\n   %s:%d\n", i, display_name(r), r.file or "?", r.line or 0))
      out:write("   ", (tostring(r.message):gsub("\n", "\n   ")), "\n")
    end
  end
  local flaky = M.flaky(results)
  if #flaky > 0 then
    out:write("\nFlaky (passed in some --repeat runs, failed in others):\n")
    for _, line in ipairs(flaky_lines(flaky)) do out:write("  ", line, "\n") end
  end
  if opts.slowest then
    out:write(string.format("\nSlowest %d its:\n", opts.slowest))
    for _, line in ipairs(slowest_lines(results, opts.slowest)) do out:write("  ", line, "\n") end
  end
  out:write("\n")
  for _, n in ipairs(notes or {}) do out:write(n.text, "\n") end
  out:write(summary_line(counts), "\n")
end

local function yaml_block(text)
  return "    " .. tostring(text):gsub("\n", "\n    ")
end

-- TAP 13: an interrupted run ends with "Bail out!", other notes are
-- comments.
function M.tap(results, counts, out, notes, opts)
  opts = opts or {}
  out:write("TAP version 13\n1..", #results, "\n")
  for i, r in ipairs(results) do
    local name = display_name(r):gsub("#", "\\#")
    if r.status == "pass" then
      out:write(string.format("ok %d - %s\n", i, name))
    elseif r.status == "skip" then
      out:write(string.format("ok %d - %s # SKIP %s\n", i, name, tostring(r.reason):gsub("\n", " ")))
    else
      out:write(string.format("not ok %d - %s\n", i, name))
      out:write("  ---\n  at: ", string.format("%q", (r.file or "?") .. ":" .. (r.line or 0)), "\n")
      out:write("  message: |\n", yaml_block(r.message), "\n  ...\n")
    end
  end
  local flaky = M.flaky(results)
  if #flaky > 0 then
    out:write("# flaky (passed in some --repeat runs, failed in others):\n")
    for _, line in ipairs(flaky_lines(flaky)) do out:write("#   ", line, "\n") end
  end
  if opts.slowest then
    out:write(string.format("# slowest %d its:\n", opts.slowest))
    for _, line in ipairs(slowest_lines(results, opts.slowest)) do out:write("#   ", line, "\n") end
  end
  for _, n in ipairs(notes or {}) do out:write(n.kind == "interrupted" and "Bail out! " or "# ", n.text, "\n") end
  out:write(summary_line(counts), "\n")
end

-- For the formats whose stdout is one document (JUnit, JSON): the flaky
-- and slowest lists, written to another stream.
function M.extras_text(results, opts)
  opts = opts or {}
  local lines = {}
  local flaky = M.flaky(results)
  if #flaky > 0 then
    lines[#lines + 1] = "Flaky (passed in some --repeat runs, failed in others):"
    for _, line in ipairs(flaky_lines(flaky)) do lines[#lines + 1] = "  " .. line end
  end
  if opts.slowest then
    lines[#lines + 1] = string.format("Slowest %d its:", opts.slowest)
    for _, line in ipairs(slowest_lines(results, opts.slowest)) do lines[#lines + 1] = "  " .. line end
  end
  return #lines > 0 and (table.concat(lines, "\n") .. "\n") or ""
end

-- XML 1.0 text: escaped, and without the control characters it forbids.
local function xml(s)
  s = tostring(s or "")
  s = s:gsub("[%z\1-\8\11\12\14-\31]", "?")
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }))
end

function M.junit(results, counts)
  local suites, order = {}, {}
  for _, r in ipairs(results) do
    local f = r.file or "?"
    if not suites[f] then
      suites[f] = { tests = 0, failures = 0, skipped = 0, time = 0, cases = {} }
      order[#order + 1] = f
    end
    local s = suites[f]
    s.tests = s.tests + 1
    s.time = s.time + (r.time or 0)
    if r.status == "fail" then s.failures = s.failures + 1 end
    if r.status == "skip" then s.skipped = s.skipped + 1 end
    s.cases[#s.cases + 1] = r
  end
  local total_time = 0
  for _, f in ipairs(order) do total_time = total_time + suites[f].time end
  local lines = {
    '<?xml version="1.0" encoding="UTF-8"?>',
    string.format('<testsuites name="gradspec" tests="%d" failures="%d" errors="0" skipped="%d" time="%.6f">',
      #results, counts.fail, counts.skip, total_time),
  }
  local stamp = os.date("!%Y-%m-%dT%H:%M:%S")
  for id, f in ipairs(order) do
    local s = suites[f]
    local classname = f:gsub("%.lua$", ""):gsub("/", ".")
    lines[#lines + 1] = string.format(
      '  <testsuite name="%s" id="%d" tests="%d" failures="%d" errors="0" skipped="%d" time="%.6f" timestamp="%s" hostname="localhost">',
      xml(f), id - 1, s.tests, s.failures, s.skipped, s.time, stamp)
    for _, r in ipairs(s.cases) do
      local open = string.format('    <testcase classname="%s" name="%s" file="%s" line="%d" time="%.6f"',
        xml(classname), xml(display_name(r)), xml(f), r.line or 0, r.time or 0)
      if r.status == "pass" then
        lines[#lines + 1] = open .. "/>"
      elseif r.status == "skip" then
        lines[#lines + 1] = open .. ">"
        lines[#lines + 1] = string.format('      <skipped message="%s"/>', xml(r.reason))
        lines[#lines + 1] = "    </testcase>"
      else
        local first = tostring(r.message):match("[^\n]*")
        lines[#lines + 1] = open .. ">"
        lines[#lines + 1] = string.format('      <failure message="%s" type="failure">%s</failure>', xml(first), xml(r.message))
        lines[#lines + 1] = "    </testcase>"
      end
    end
    lines[#lines + 1] = "  </testsuite>"
  end
  lines[#lines + 1] = "</testsuites>"
  return table.concat(lines, "\n") .. "\n"
end

-- JSON ---------------------------------------------------------------------

-- An object whose keys are written in the given order; a key whose value
-- is nil is written as null (gradspec.json).
local obj = json.object

local function strings(list)
  local out = json.array()
  for i, x in ipairs(list or {}) do out[i] = tostring(x) end
  return out
end

-- The whole run as one JSON document (its schema:
-- specs/fixtures/json/run.schema.json). info: seed, shuffle_seed, repeat,
-- jobs, shard ("K/N"), slowest (K), version.
function M.json(results, counts, state, notes, info)
  info = info or {}
  state = state or {}
  local files, by_file = json.array(), {}
  local total_assertions, total_time = 0, 0
  for _, r in ipairs(results) do
    local fname = r.file or "?"
    local f = by_file[fname]
    if not f then
      f = obj({ "file", "status", "duration", "passed", "failed", "skipped", "its" },
        { file = fname, passed = 0, failed = 0, skipped = 0, its = json.array(), time = 0 })
      by_file[fname] = f
      files[#files + 1] = f
    end
    local key = ({ pass = "passed", fail = "failed", skip = "skipped" })[r.status]
    f[key] = f[key] + 1
    f.time = f.time + (r.time or 0)
    total_assertions = total_assertions + (r.assertions or 0)
    total_time = total_time + (r.time or 0)
    f.its[#f.its + 1] = obj({ "name", "line", "status", "duration", "message", "reason", "seed", "repeat",
      "assertions", "warnings", "notes" }, {
      name = r.name, line = r.line or 0, status = r.status, duration = r.time,
      message = r.status == "fail" and tostring(r.message) or nil,
      reason = r.status == "skip" and tostring(r.reason) or nil,
      seed = r.seed, ["repeat"] = r["repeat"], assertions = r.assertions or 0,
      warnings = strings(r.warnings), notes = strings(r.notes),
    })
  end
  for _, f in ipairs(files) do
    f.status = f.failed > 0 and "fail" or f.passed > 0 and "pass" or "skip"
    f.duration = (state.file_times or {})[f.file] or f.time
    f.time = nil
  end
  local flaky = json.array()
  for i, e in ipairs(M.flaky(results)) do
    local seeds = json.array()
    for j, sd in ipairs(e.seeds) do seeds[j] = sd end
    flaky[i] = obj({ "name", "file", "line", "runs", "failed", "failed_seeds" },
      { name = e.name, file = e.file, line = e.line or 0, runs = e.runs, failed = e.failed, failed_seeds = seeds })
  end
  local note_list = json.array()
  for i, n in ipairs(notes or {}) do note_list[i] = obj({ "kind", "text" }, { kind = n.kind, text = n.text }) end
  local interrupted = nil
  if state.interrupted and state.interrupted ~= 0 then
    interrupted = obj({ "signal", "in", "files_not_run" },
      { signal = tostring(state.signal), ["in"] = state.file, files_not_run = state.not_run or 0 })
  end
  local order = { "format", "gradspec", "seed", "shuffle_seed", "repeat", "jobs", "shard", "summary", "interrupted",
    "notes", "files", "flaky" }
  local doc = obj(order, {
    format = "gradspec-run/1", gradspec = info.version, seed = info.seed, shuffle_seed = info.shuffle_seed,
    ["repeat"] = info["repeat"] or 1, jobs = info.jobs or 1, shard = info.shard,
    summary = obj({ "passed", "failed", "skipped", "its", "assertions", "duration" }, {
      passed = counts.pass, failed = counts.fail, skipped = counts.skip, its = #results,
      assertions = total_assertions, duration = total_time }),
    interrupted = interrupted, notes = note_list, files = files, flaky = flaky,
  })
  if info.slowest then
    local slow = json.array()
    for i, r in ipairs(M.slowest(results, info.slowest)) do
      slow[i] = obj({ "name", "file", "line", "duration", "repeat" },
        { name = r.name, file = r.file, line = r.line or 0, duration = r.time, ["repeat"] = r["repeat"] })
    end
    doc.slowest = slow
    order[#order + 1] = "slowest"
  end
  return json.encode(doc, "  ") .. "\n"
end

return M

-- Turning results into text, TAP 13 or JUnit XML. Every format ends the run
-- with "N passed, N failed, N skipped" alone on a line.
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

-- Progress for the text format: one line per it with -v, else one per file.
function M.text_progress(verbose, out)
  local file, counts, spent = nil, nil, 0
  local function flush_file()
    if file and not verbose then
      out:write(string.format("%s: %d passed, %d failed, %d skipped (%.2f s)\n", file, counts.pass,
        counts.fail, counts.skip, spent))
      out:flush()
    end
  end
  return function(rec)
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
      out:write(string.format("  %s  %s%s\n", label, rec.name, extra))
      for _, w in ipairs(rec.warnings or {}) do out:write("        warning: ", w, "\n") end
      for _, n in ipairs(rec.notes or {}) do out:write("        ", n, "\n") end
      out:flush()
    end
  end, flush_file
end

function M.text_summary(results, counts, out, notes)
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
      out:write(string.format("\n%d) %s\n   %s:%d\n", i, r.name, r.file or "?", r.line or 0))
      out:write("   ", (tostring(r.message):gsub("\n", "\n   ")), "\n")
    end
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
function M.tap(results, counts, out, notes)
  out:write("TAP version 13\n1..", #results, "\n")
  for i, r in ipairs(results) do
    local name = r.name:gsub("#", "\\#")
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
  for _, n in ipairs(notes or {}) do out:write(n.kind == "interrupted" and "Bail out! " or "# ", n.text, "\n") end
  out:write(summary_line(counts), "\n")
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
        xml(classname), xml(r.name), xml(f), r.line or 0, r.time or 0)
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

return M

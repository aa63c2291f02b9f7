-- `gradspec conventions`: checks every backend of every op against the
-- sign and range conventions each op declares (ce_family.lua) on seeded
-- random and nasty inputs.
local T = require("gradspec.tensor_math")
local track = require("gradspec.track")
local registry = require("gradspec.backend")
local family = require("gradspec.ce_family")

local M = {}

-- Every declared convention, in the family's op order: {op, name, check}.
M.declared = {}
for _, op in ipairs(family.order) do
  for _, c in ipairs(family.ops[op].conventions or {}) do
    M.declared[#M.declared + 1] = { op = op, name = c.name, check = c.check }
  end
end

local function i64(values) return T.tensor(values, { dtype = "i64" }) end

-- The inputs every convention is checked on: {name, logits, target}.
function M.inputs()
  local sets = {}
  local function add(name, x, t) sets[#sets + 1] = { name = name, logits = x, target = t } end
  add("random f32 16x257", T.randn({ 16, 257 }, { seed = 1, std = 3 }), T.randint(0, 257, { 16 }, { seed = 2 }))
  add("random bf16 8x1000", T.randn({ 8, 1000 }, { seed = 3, std = 4, dtype = "bf16" }), T.randint(0, 1000, { 8 }, { seed = 4 }))
  add("logits of +-1e4", T.tensor({ { 1e4, -1e4, 0, 5 }, { -1e4, 1e4, 1e4, -3 } }), i64({ 1, 2 }))
  local masked = T.randn({ 4, 9 }, { seed = 5 })
  for r = 0, 3 do masked:set(r, (r * 2 + 1) % 9, -math.huge) end
  add("masked vocabulary (-inf)", masked, i64({ 0, 2, 4, 6 }))
  add("near-certain predictions", T.tensor({ { 30, 0, 0 }, { 0, 0, 25 } }), i64({ 0, 2 }))
  add("V = 1", T.randn({ 3, 1 }, { seed = 6 }), i64({ 0, 0, 0 }))
  return sets
end

-- Checks every declared convention on every backend; returns rows of
-- {convention, {backend -> "ok" | "FAIL" | "skip"}}, the failures, and the
-- reasons for skips. An input a backend cannot take (its dtype, an option
-- it does not declare) is skipped for that backend; a cell none of whose
-- inputs ran reads "skip".
function M.check(backends)
  local sets = M.inputs()
  local rows, failures, skips, seen = {}, {}, {}, {}
  local function skipped(b, why)
    if not seen[why] then
      seen[why] = true
      skips[#skips + 1] = why
    end
  end
  for _, conv in ipairs(M.declared) do
    local row = { conv = conv, cells = {} }
    for _, b in ipairs(backends) do
      local e = registry.get(b)
      local status, ran = "ok", 0
      local unavailable = registry.unavailable_reason(e)
      if unavailable then skipped(b, b .. ": " .. unavailable) end
      for _, inp in ipairs(unavailable and {} or sets) do
        local moved = { name = inp.name, logits = inp.logits:to(e.device), target = inp.target:to(e.device) }
        local ok, why = pcall(track.untracked, conv.check, b, moved)
        if not ok and registry.is_unsupported(why) then
          skipped(b, why.reason)
        else
          ran = ran + 1
          if not ok then why = "raised an error: " .. tostring(why) end
          if why then
            status = "FAIL"
            failures[#failures + 1] = { conv = conv, backend = b, input = inp.name, why = why }
          end
        end
      end
      row.cells[b] = ran == 0 and "skip" or status
    end
    rows[#rows + 1] = row
  end
  return rows, failures, skips
end

local USAGE = [[
usage: gradspec conventions [--backends a,b,...] [--load FILE]... [--html FILE]
Checks every backend of every op against the sign and range conventions each
op declares (lua/gradspec/conventions.lua) on seeded random and nasty inputs,
and prints a table with a column per backend.

  --backends a,b   the backends to check (default: every registered backend;
                   those that cannot run here are listed as skipped)
  --load FILE      a Lua file that registers backends (gs.backend.register or
                   gs.backend.load); repeatable; GRADSPEC_LOAD also names files
  --html FILE      also write the table and every violation, with the input it
                   failed on, as one self-contained HTML page

Exit status: 0 when every checked backend keeps every convention, 1 on a
violation, 2 for a usage error.
]]

local function usage_error(msg)
  io.stderr:write("gradspec conventions: ", msg, "\n(gradspec conventions --help shows the usage)\n")
  return 2
end

function M.main(args)
  local wanted, loads, html = nil, {}, nil
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--help" or a == "-h" then io.stdout:write(USAGE) return 0
    elseif a == "--backends" or a == "--load" or a == "--html" then
      local v = args[i + 1]
      if v == nil then return usage_error(a .. " needs a value") end
      if a == "--load" then loads[#loads + 1] = v
      elseif a == "--html" then html = v
      else
        wanted = {}
        for b in v:gmatch("[^,%s]+") do wanted[#wanted + 1] = b end
      end
      i = i + 1
    else return usage_error("unknown argument " .. a) end
    i = i + 1
  end
  registry.load_env()
  local lok, lerr = pcall(registry.load_files, loads)
  if not lok then
    io.stderr:write("gradspec conventions: ", tostring(lerr), "\n")
    return 2
  end
  local backends = wanted or registry.names()
  for _, b in ipairs(backends) do
    if not registry.get(b) then
      return usage_error(string.format("--backends: %s is not a registered backend (registered: %s)", b,
        table.concat(registry.names(), ", ")))
    end
  end

  local rows, failures, skips = M.check(backends)
  if html then
    local command = { "gradspec", "conventions" }
    for _, x in ipairs(args) do command[#command + 1] = require("gradspec.html.page").shell_quote(x) end
    local hok, herr = pcall(require("gradspec.html.conventions_report").write, html, { backends = backends, rows = rows,
      failures = failures, skips = skips, inputs = M.inputs(), command = table.concat(command, " ") })
    if not hok then return usage_error("--html: " .. tostring(herr)) end
  end
  local width = #"convention"
  for _, r in ipairs(rows) do width = math.max(width, #(r.conv.op .. ": " .. r.conv.name)) end
  local function line(first, cells)
    local parts = { string.format("%-" .. width .. "s ", first) }
    for k, b in ipairs(backends) do parts[#parts + 1] = string.format(" %-" .. math.max(5, #b) .. "s", cells[k]) end
    io.stdout:write((table.concat(parts):gsub("%s+$", "")), "\n")
  end
  line("convention", backends)
  for _, r in ipairs(rows) do
    local cells = {}
    for k, b in ipairs(backends) do cells[k] = r.cells[b] end
    line(r.conv.op .. ": " .. r.conv.name, cells)
  end
  if #skips > 0 then
    io.stdout:write("\nskipped:\n")
    for _, why in ipairs(skips) do io.stdout:write("  ", why, "\n") end
  end
  io.stdout:write(string.format("\nchecked on %d inputs: ", #M.inputs()))
  local names = {}
  for _, inp in ipairs(M.inputs()) do names[#names + 1] = inp.name end
  io.stdout:write(table.concat(names, ", "), "\n")
  if #failures > 0 then
    io.stdout:write("\nViolations:\n")
    for _, f in ipairs(failures) do
      io.stdout:write(string.format("  %s: %s [backend %s, input %s]\n    %s\n", f.conv.op, f.conv.name, f.backend,
        f.input, (f.why:gsub("\n", "\n    "))))
    end
    io.stdout:write(string.format("\n%d violation(s)\n", #failures))
    return 1
  end
  io.stdout:write("\nevery checked backend keeps every declared convention\n")
  return 0
end

return M

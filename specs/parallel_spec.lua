-- gradspec run -j N (spec files in N child processes at once) and
-- --shard K/N with --timings/--save-timings, as a user meets them: the
-- output, the summary and the reports are those of a serial run.
local process = require("gradspec.process")

local R, P = "specs/fixtures/runner/", "specs/fixtures/parallel/"

local function has(out, text) return out:find(text, 1, true) ~= nil end

-- gradspec run with arguments, and environment variables ("NAME=value" words).
local function run(env, args)
  local parts = { env or "", process.quote(process.self_exe()), "run" }
  for _, a in ipairs(args) do parts[#parts + 1] = process.quote(a) end
  return process.run(table.concat(parts, " "))
end

local function with(list, ...)
  local out = {}
  for _, x in ipairs(list) do out[#out + 1] = x end
  for _, x in ipairs({ ... }) do out[#out + 1] = x end
  return out
end

-- What differs between two runs of the same specs: times.
local function normalized(out)
  out = out:gsub("%(%d+%.%d+ s%)", "(T s)"):gsub("%(%d+%.%d+ ms%)", "(T ms)")
  out = out:gsub('time="[%d.]+"', 'time="T"'):gsub('timestamp="[^"]*"', 'timestamp="T"')
  return out
end

-- A mix of what a run meets: passes, failures, skips, a crash, output
-- before a crash, hook errors, a load error, a file that ends early.
local MIX = { R .. "passing.lua", R .. "mixed.lua", R .. "crash.lua", R .. "print_then_crash.lua",
  R .. "hook_errors.lua", R .. "load_error.lua", R .. "ends_early.lua", P .. "fast_second.lua" }
local ENV = "GRADSPEC_FIXTURE_END=segv"

-- Every spec file under specs/fixtures (any name): the files a shard splits.
local function fixture_files()
  local out, code = process.run("find specs/fixtures -type f -name '*.lua' | LC_ALL=C sort")
  assert.equal(code, 0, out)
  local files = {}
  for line in out:gmatch("[^\n]+") do files[#files + 1] = line end
  return files
end

local function lines_of(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

describe("gradspec run -j", function()
  for _, extra in ipairs({ {}, { "-v" }, { "--output", "tap" }, { "--output", "junit" }, { "--fail-fast" } }) do
    it("-j 2 prints what a serial run prints: " .. (#extra > 0 and table.concat(extra, " ") or "text"), function()
      local serial, scode = run(ENV, with(MIX, unpack(extra)))
      local par, pcode = run(ENV, with(MIX, "-j", "2", unpack(extra)))
      assert.equal(pcode, scode, par)
      assert.equal(normalized(par), normalized(serial))
      if extra[1] ~= "--fail-fast" then assert.is_true(has(par, "printed before the crash"), par) end
    end)
  end

  it("keeps each file's output together, in file order, though a later file finishes first", function()
    local out, code = run(nil, { P .. "slow_first.lua", P .. "fast_second.lua", "-j", "2" })
    assert.equal(code, 1, out)
    local expect = "slow: start\nslow: end\nslow: on stderr\n" ..
      "specs/fixtures/parallel/slow_first.lua: 1 passed, 0 failed, 0 skipped"
    assert.is_true(has(out, expect), out)
    local slow_at, fast_at = out:find("slow_first.lua: 1 passed", 1, true), out:find("fast: done", 1, true)
    assert.is_true(slow_at ~= nil and fast_at ~= nil and slow_at < fast_at, out)
    assert.is_true(has(out, "fast: done\nspecs/fixtures/parallel/fast_second.lua: 1 passed, 1 failed, 0 skipped"), out)
  end)

  -- meet.lua passes only where all its copies run at once (see the fixture).
  local function meet(count, wait, args)
    local dir = os.tmpname()
    os.remove(dir)
    assert.equal(select(2, process.run("mkdir " .. process.quote(dir))), 0)
    local env = string.format("GRADSPEC_MEET_DIR=%s GRADSPEC_MEET_COUNT=%d GRADSPEC_MEET_WAIT=%g",
      process.quote(dir), count, wait)
    local out, code = run(env, args)
    process.run("rm -rf " .. process.quote(dir))
    return out, code
  end

  it("runs the files at the same time", function()
    local files = { P .. "meet.lua", P .. "meet.lua", P .. "meet.lua" }
    local out, code = meet(3, 30, with(files, "-j", "3"))
    assert.equal(code, 0, out)
    assert.is_true(has(out, "3 passed, 0 failed, 0 skipped"), out)
    -- The same three files one after another: the first two never see three.
    out, code = meet(3, 0.3, files)
    assert.equal(code, 1, out)
    assert.is_true(has(out, "1 passed, 2 failed, 0 skipped"), out)
    assert.is_true(has(out, "saw 1 of 3 copies running"), out)
    assert.is_true(has(out, "saw 2 of 3 copies running"), out)
  end)

  it("a file that times out fails as in a serial run, and the others still run", function()
    -- 1.5 s: time enough for the other files to finish on a loaded machine
    local args = { R .. "passing.lua", R .. "hang.lua", R .. "mixed.lua", "--timeout", "1.5" }
    local serial, scode = run(nil, args)
    local par, pcode = run(nil, with(args, "-j", "2"))
    assert.equal(pcode, 1, par)
    assert.equal(scode, 1, serial)
    assert.is_true(has(par, "hang.lua: the process timed out after 1.5 s (--timeout) inside this it"), par)
    assert.equal(normalized(par), normalized(serial))
  end)

  it("-j 0 runs one file per core; a bad count or --no-isolate is a usage error", function()
    local out, code = run(nil, { R .. "passing.lua", P .. "weights.lua", "-j", "0" })
    assert.equal(code, 0, out)
    assert.is_true(has(out, "7 passed, 0 failed, 0 skipped"), out)
    out, code = run(nil, { R .. "passing.lua", "-j", "-1" })
    assert.equal(code, 2, out)
    assert.is_true(has(out, "-j needs a whole number of jobs (0: one per core), got -1"), out)
    out, code = run(nil, { R .. "passing.lua", "-j", "2", "--no-isolate" })
    assert.equal(code, 2, out)
    assert.is_true(has(out, "-j runs spec files in child processes: it cannot be used with --no-isolate"), out)
    out, code = run(nil, { R .. "passing.lua", P .. "weights.lua", "-j2" })
    assert.equal(code, 0, out)
  end)
end)

describe("gradspec run --shard", function()
  it("two shards cover the suite's fixture files exactly once, the same way every time", function()
    local all = fixture_files()
    assert.is_true(#all > 20, "fixture files: " .. #all)
    local seen = {}
    local firsts = {}
    for k = 1, 2 do
      local out, code = run(nil, with(all, "--shard", k .. "/2", "--list-files"))
      assert.equal(code, 0, out)
      local again = run(nil, with(all, "--shard", k .. "/2", "--list-files"))
      assert.equal(again, out, "shard " .. k .. " changed between two runs")
      local files = lines_of(out)
      firsts[k] = #files
      for _, f in ipairs(files) do
        assert.is_nil(seen[f], f .. " is in two shards")
        seen[f] = k
      end
    end
    for _, f in ipairs(all) do assert.is_true(seen[f] ~= nil, f .. " is in no shard") end
    -- without timings every file weighs the same: the halves differ by one at most
    assert.is_true(math.abs(firsts[1] - firsts[2]) <= 1, firsts[1] .. " and " .. firsts[2])
  end)

  it("three shards keep the files' order and their its add up to the whole", function()
    local files = { R .. "passing.lua", R .. "mixed.lua", P .. "weights.lua", P .. "fast_second.lua", R .. "seed.lua" }
    local function count_its(args)
      local out, code = run(nil, with(files, "--list", unpack(args)))
      assert.equal(code, 0, out)
      return #lines_of(out), out
    end
    local whole = count_its({})
    local sum = 0
    for k = 1, 3 do
      local n = count_its({ "--shard", k .. "/3" })
      sum = sum + n
      local listed = run(nil, with(files, "--shard", k .. "/3", "--list-files"))
      local pos = 0
      for _, f in ipairs(lines_of(listed)) do
        local at
        for i, g in ipairs(files) do if g == f then at = i end end
        assert.is_true(at ~= nil and at > pos, "shard " .. k .. " is out of order:\n" .. listed)
        pos = at
      end
    end
    assert.equal(sum, whole)
    assert.equal(whole, 19)
  end)

  it("--timings balances the shards by the time each file took", function()
    local t = os.tmpname()
    local f = assert(io.open(t, "w"))
    f:write("# gradspec timings: seconds<TAB>spec file, one per line\n")
    f:write("100.0\t" .. P .. "slow_first.lua\n", "1.0\t" .. R .. "passing.lua\n", "1.0\t" .. R .. "mixed.lua\n",
      "2.0\t" .. P .. "weights.lua\n")
    f:close()
    local files = { R .. "passing.lua", R .. "mixed.lua", P .. "slow_first.lua", P .. "weights.lua", R .. "seed.lua" }
    local one = run(nil, with(files, "--shard", "1/2", "--timings", t, "--list-files"))
    local two = run(nil, with(files, "--shard", "2/2", "--timings", t, "--list-files"))
    os.remove(t)
    -- the 100 s file alone in one shard; every other file (seed.lua, not in
    -- the timings, counts as their median) in the other
    assert.equal(one, P .. "slow_first.lua\n")
    assert.equal(two, R .. "passing.lua\n" .. R .. "mixed.lua\n" .. P .. "weights.lua\n" .. R .. "seed.lua\n")
  end)

  it("--save-timings writes each file's time and keeps the entries of files it did not run", function()
    local t = os.tmpname()
    local f = assert(io.open(t, "w"))
    f:write("7.5\tspecs/some_other_spec.lua\n", "9.0\t" .. R .. "passing.lua\n")
    f:close()
    local out, code = run(nil, { R .. "passing.lua", P .. "weights.lua", "-j", "2", "--save-timings", t })
    assert.equal(code, 0, out)
    f = assert(io.open(t, "r"))
    local text = f:read("*a")
    f:close()
    os.remove(t)
    local lines = lines_of(text)
    assert.equal(lines[1], "# gradspec timings: seconds<TAB>spec file, one per line")
    assert.equal(#lines, 4, text)
    local secs = {}
    for _, l in ipairs(lines) do
      local s, p = l:match("^([%d.]+)\t(.+)$")
      if s then secs[p] = tonumber(s) end
    end
    assert.equal(secs["specs/some_other_spec.lua"], 7.5)
    assert.is_true(secs[R .. "passing.lua"] ~= nil and secs[R .. "passing.lua"] < 9, text)
    assert.is_true(secs[P .. "weights.lua"] ~= nil, text)
  end)

  it("--shard needs K/N with 1 <= K <= N; a missing timings file runs without timings", function()
    for _, bad in ipairs({ "0/2", "3/2", "1", "a/b", "1/0" }) do
      local out, code = run(nil, { R .. "passing.lua", "--shard", bad })
      assert.equal(code, 2, out)
      assert.is_true(has(out, "--shard needs K/N with 1 <= K <= N (shard K of N), got " .. bad), out)
    end
    local out, code = run(nil, { R .. "passing.lua", "--shard", "1/1", "--timings", "/nonexistent/timings.tsv" })
    assert.equal(code, 0, out)
    assert.is_true(has(out, "--timings: cannot read /nonexistent/timings.tsv"), out)
    assert.is_true(has(out, "2 passed, 0 failed, 0 skipped"), out)
  end)
end)

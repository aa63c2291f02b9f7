-- The runner as a user meets it: gradspec run on fixture files, asserting on
-- exit status and output.
local process = require("gradspec.process")

local F = "specs/fixtures/runner/"

local function run(...)
  return process.gradspec({ "run", ... })
end

local function has(out, text)
  return out:find(text, 1, true) ~= nil
end

describe("gradspec run", function()
  it("an it that asserts nothing fails, and says so", function()
    local out, code = run(F .. "mixed.lua", "--filter", "asserts nothing")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "asserted nothing"), out)
    assert.is_true(has(out, "0 passed, 1 failed, 0 skipped"), out)
  end)

  it("an erroring it fails with a traceback to the spec line and the run goes on", function()
    local out, code = run(F .. "mixed.lua", "-v")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "mixed.lua:13: attempt to index local 't'"), out)
    assert.is_true(has(out, "stack traceback:\n   \tspecs/fixtures/runner/mixed.lua:13: in function"), out)
    assert.is_true(has(out, "PASS  mixed runs after the error"), out)
  end)

  it("ends with the summary line alone on the last line", function()
    local out = run(F .. "mixed.lua")
    local last = out:match("([^\n]+)\n*$")
    assert.equal(last, "4 passed, 3 failed, 2 skipped")
  end)

  it("reports assertion failures with the worst element", function()
    local out = run(F .. "mixed.lua", "--filter", "fails an assertion")
    assert.is_true(has(out, "1 of 2 elements mismatch"), out)
    assert.is_true(has(out, "worst at [1]: actual 2 vs expected 2.5"), out)
    assert.is_true(has(out, "mixed.lua:21"), out)
  end)

  it("exits 0 when nothing failed and runs hooks in order", function()
    local out, code = run(F .. "passing.lua")
    assert.equal(code, 0, out)
    assert.is_true(has(out, "2 passed, 0 failed, 0 skipped"), out)
  end)

  it("exits 2 on an unknown option, naming it", function()
    local out, code = run("--bogus")
    assert.equal(code, 2, out)
    assert.is_true(has(out, "unknown option --bogus"), out)
  end)

  it("--tags and --exclude-tags select by tag, including #tags in names and inherited tags", function()
    local out = run(F .. "mixed.lua", "--tags", "slow,gpuish", "-v")
    assert.is_true(has(out, "2 passed, 0 failed, 0 skipped"), out)
    out = run(F .. "mixed.lua", "--exclude-tags", "slow,gpuish")
    assert.is_true(has(out, "2 passed, 3 failed, 2 skipped"), out)
  end)

  it("--list lists the selected its without running them", function()
    local out, code = run(F .. "mixed.lua", "--list", "--tags", "gpuish")
    assert.equal(code, 0, out)
    assert.is_true(has(out, "tagged block inherits the block's tag #gpuish"), out)
    assert.is_false(has(out, "passed"), out)
  end)

  it("reports pending and skipped its with their reasons", function()
    local out = run(F .. "mixed.lua")
    assert.is_true(has(out, "1: pending"), out)
    assert.is_true(has(out, "1: the fixture says so"), out)
  end)

  it("a file that does not load fails alone", function()
    local out, code = run(F .. "load_error.lua", F .. "passing.lua")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "load_error.lua (loading the file)"), out)
    assert.is_true(has(out, "2 passed, 1 failed, 0 skipped"), out)
  end)
end)

describe("crash isolation", function()
  it("a segfault fails its file with the signal and the running it; other files still run", function()
    local out, code = run(F .. "crash.lua", F .. "passing.lua")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "crashed with SIGSEGV while running 'crash dereferences NULL'"), out)
    assert.is_true(has(out, "3 passed, 1 failed, 0 skipped"), out)
  end)

  it("a hang is killed at --timeout and named", function()
    local out, code = run(F .. "hang.lua", "--timeout", "1")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "timed out after 1 s"), out)
    assert.is_true(has(out, "while running 'hang loops forever'"), out)
  end)
end)

describe("report formats", function()
  it("TAP output numbers every it and declares the plan", function()
    local out = run(F .. "mixed.lua", "--output", "tap")
    local plan = tonumber(out:match("\n1%.%.(%d+)\n"))
    assert.equal(plan, 9)
    local n = 0
    for num in out:gmatch("\n[not ]*ok (%d+) ") do
      n = n + 1
      assert.equal(tonumber(num), n)
    end
    assert.equal(n, plan)
    assert.is_true(has(out, "# SKIP pending"), out)
    assert.is_true(has(out, "not ok 2 - mixed asserts nothing"), out)
  end)

  it("JUnit output is well-formed XML with the right counts", function()
    local path = os.tmpname()
    run(F .. "mixed.lua", "--junit", path)
    local f = assert(io.open(path))
    local xml = f:read("*a")
    f:close()
    os.remove(path)
    assert.is_true(has(xml, '<testsuites name="gradspec" tests="9" failures="3" errors="0" skipped="2"'), xml)
    local _, opened = xml:gsub("<testcase ", "")
    assert.equal(opened, 9)
    local ok_py = process.run("command -v python3")
    skip_if(not ok_py:find("python3"), "python3 is not installed: XML parsing not checked")
    local p = os.tmpname()
    local g = assert(io.open(p, "w"))
    g:write(xml)
    g:close()
    local out, code = process.run("python3 -c 'import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); print(len(d.getElementsByTagName(\"failure\")))' " .. p)
    os.remove(p)
    assert.equal(code, 0, out)
    assert.equal(tonumber(out), 3)
  end)
end)

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

-- gradspec run with environment variables set ("NAME=value" words).
local function run_env(env, ...)
  local parts = { env, process.quote(process.self_exe()), "run" }
  for _, a in ipairs({ ... }) do parts[#parts + 1] = process.quote(a) end
  return process.run(table.concat(parts, " "))
end

-- exit() from C skips the Lua state's teardown: under AddressSanitizer,
-- LeakSanitizer would report the buffers Lua still held and change the exit
-- status these specs check. (Other builds ignore ASAN_OPTIONS.)
local EXIT_ENV = 'ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"'

local function last_line(out) return out:match("([^\n]+)\n*$") end
local function line_before_last(out) return out:match("([^\n]+)\n[^\n]+\n*$") end

-- The failure report of the it named `name`: its block under Failures.
local function failure_of(out, name)
  return out:match("%d+%) " .. name:gsub("%p", "%%%0") .. "\n(.-)\n\n") or ""
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

  it("finds its Lua library from any working directory", function()
    local out, code = process.run("cd / && " .. process.quote(process.self_exe()) .. " -e 'print(gs.version)'")
    assert.equal(code, 0, out)
    assert.is_true(out:match("^%d+%.%d+%.%d+") ~= nil, out)
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
    assert.is_true(has(out, "1) crash dereferences NULL\n   specs/fixtures/runner/crash.lua:5\n"), out)
    assert.is_true(has(out, "crash.lua: the process crashed with SIGSEGV inside this it"), out)
    assert.is_true(has(out, "3 passed, 1 failed, 0 skipped"), out)
  end)

  it("a hang is killed at --timeout and named", function()
    local out, code = run(F .. "hang.lua", "--timeout", "1")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "1) hang loops forever\n"), out)
    assert.is_true(has(out, "the process timed out after 1 s (--timeout) inside this it"), out)
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

  it("JUnit output validates against the schema subset CI servers read, crashes included", function()
    local have = process.run("command -v xmllint")
    skip_if(not have:find("xmllint"), "xmllint is not installed (apt-get install libxml2-utils)")
    local path = os.tmpname()
    run(F .. "mixed.lua", F .. "crash.lua", "--junit", path)
    local out, code = process.run("xmllint --noout --schema specs/fixtures/junit.xsd " .. path)
    os.remove(path)
    assert.equal(code, 0, out)
    assert.is_true(has(out, "validates"), out)
  end)
end)

describe("a spec file that does not run to its end fails", function()
  local ends = {
    { how = "c0", reason = "the process exited with status 0 inside this it" },
    { how = "c1", reason = "the process exited with status 1 inside this it" },
    { how = "abort", reason = "the process crashed with SIGABRT inside this it" },
    { how = "segv", reason = "the process crashed with SIGSEGV inside this it" },
    { how = "kill", reason = "the process crashed with SIGKILL inside this it" },
    { how = "hang", reason = "the process timed out after 1.5 s (--timeout) inside this it", timeout = "1.5" },
  }
  for _, e in ipairs(ends) do
    it("an end by " .. e.how .. " fails the running it and every it after it as not run", function()
      local out, code = run_env(EXIT_ENV .. " GRADSPEC_FIXTURE_END=" .. e.how, F .. "ends_early.lua", "--timeout", e.timeout or "60", "-v")
      assert.equal(code, 1, out)
      assert.is_true(has(out, "PASS  ends early passes first"), out)
      assert.is_true(has(failure_of(out, "ends early ends the process"), e.reason), out)
      for _, name in ipairs({ "ends early is never reached", "ends early is never reached either" }) do
        assert.is_true(has(out, "FAIL  " .. name .. "\n"), out)
        assert.is_true(has(failure_of(out, name), "not run: the file ended early ("), out)
      end
      assert.equal(last_line(out), "1 passed, 3 failed, 0 skipped", out)
    end)
  end

  it("TAP and JUnit count every it of a file that ended early", function()
    local out, code = run_env(EXIT_ENV .. " GRADSPEC_FIXTURE_END=c0", F .. "ends_early.lua", "--output", "tap")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "\n1..4\n"), out)
    assert.is_true(has(out, "not ok 4 - ends early is never reached either\n"), out)
    local path = os.tmpname()
    run_env(EXIT_ENV .. " GRADSPEC_FIXTURE_END=c0", F .. "ends_early.lua", "--junit", path)
    local f = assert(io.open(path))
    local xml = f:read("*a")
    f:close()
    os.remove(path)
    assert.is_true(has(xml, 'tests="4" failures="3" errors="0" skipped="0"'), xml)
  end)

  it("an exit inside the after_each of the last it fails that it", function()
    local out, code = run_env(EXIT_ENV, F .. "exit_after_each.lua")
    assert.equal(code, 1, out)
    assert.is_true(has(failure_of(out, "exit in after_each is the last it"),
      "the process exited with status 0 inside this it"), out)
    assert.equal(last_line(out), "1 passed, 1 failed, 0 skipped", out)
  end)

  it("an exit while the file loads fails the file", function()
    local out, code = run_env(EXIT_ENV, F .. "exit_at_load.lua", F .. "passing.lua")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "exit_at_load.lua: the process exited with status 0 while loading the file"), out)
    assert.equal(last_line(out), "2 passed, 1 failed, 0 skipped", out)
  end)

  it("a process that ends after its last it reported, before the file finished, fails the file", function()
    local out, code = run_env(EXIT_ENV, F .. "ends_before_done.lua")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "ends_before_done.lua (after the last it)"), out)
    assert.is_true(has(out, "the process exited with status 0 after its last it, before the file finished"), out)
    assert.equal(last_line(out), "2 passed, 1 failed, 0 skipped", out)
  end)

  it("what a spec printed before a crash reaches the output", function()
    local out, code = run(F .. "print_then_crash.lua")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "printed before the crash\n"), out)
    assert.is_true(has(out, "written without a newline"), out)
    assert.is_true(has(out, "crashed with SIGSEGV inside this it"), out)
  end)
end)

describe("os.exit and exit() in a spec", function()
  for _, mode in ipairs({ "isolated", "--no-isolate" }) do
    it("os.exit in an it or a hook fails that it and the run goes on (" .. mode .. ")", function()
      local args = { F .. "os_exit.lua", "-v" }
      if mode ~= "isolated" then args[#args + 1] = mode end
      local out, code = run(unpack(args))
      assert.equal(code, 1, out)
      assert.is_true(has(failure_of(out, "os.exit calls os.exit(0)"),
        "os_exit.lua:5: os.exit(0) called inside this it: a spec must not end the process"), out)
      assert.is_true(has(failure_of(out, "os.exit catches os.exit and asserts"), "os.exit(0) called inside this it"), out)
      assert.is_true(has(failure_of(out, "os.exit reaches os.exit through require"), "os.exit(true) called inside this it"), out)
      assert.is_true(has(failure_of(out, "os.exit in a hook never gets to its body"),
        "before_each: specs/fixtures/runner/os_exit.lua:24: os.exit(1) called inside this it"), out)
      assert.is_true(has(out, "PASS  os.exit runs after them"), out)
      assert.equal(last_line(out), "1 passed, 4 failed, 0 skipped", out)
    end)

    it("os.exit while the file loads fails the file with file:line (" .. mode .. ")", function()
      local args = { F .. "os_exit_at_load.lua", F .. "passing.lua" }
      if mode ~= "isolated" then args[#args + 1] = mode end
      local out, code = run(unpack(args))
      assert.equal(code, 1, out)
      assert.is_true(has(out, "os_exit_at_load.lua:8: os.exit(0) called while loading the file: a spec must not end the process"), out)
      assert.equal(last_line(out), "2 passed, 1 failed, 0 skipped", out)
    end)
  end

  it("exit() from C under --no-isolate exits non-zero and names the it", function()
    local out, code = run_env("GRADSPEC_FIXTURE_END=c0", F .. "ends_early.lua", "--no-isolate")
    assert.is_true(code ~= 0, out)
    assert.is_true(has(out, "gradspec: the process exited inside 'ends early ends the process' " ..
      "(specs/fixtures/runner/ends_early.lua:17) before the run finished (exit status 0)"), out)
    out, code = run(F .. "exit_at_load.lua", "--no-isolate")
    assert.is_true(code ~= 0, out)
    assert.is_true(has(out, "inside specs/fixtures/runner/exit_at_load.lua (loading the file) before the run finished"), out)
  end)
end)

describe("errors in hooks and at load", function()
  it("an error in before_each or after_each fails the it with the hook's message", function()
    local out, code = run(F .. "hook_errors.lua")
    assert.equal(code, 1, out)
    assert.is_true(has(failure_of(out, "before_each fails does not run its body"),
      "before_each: specs/fixtures/runner/hook_errors.lua:4: setup broke"), out)
    assert.is_true(has(failure_of(out, "after_each fails passes its body"),
      "after_each: specs/fixtures/runner/hook_errors.lua:11: teardown broke"), out)
    local both = failure_of(out, "after_each fails fails its body too")
    assert.is_true(has(both, "hook_errors.lua:16: assert.equal: expected 2, got 1"), out)
    assert.is_true(has(both, "after_each: specs/fixtures/runner/hook_errors.lua:11: teardown broke"), out)
    assert.equal(last_line(out), "0 passed, 3 failed, 0 skipped", out)
  end)

  it("an error at file load fails the file with file:line, with or without a position of its own", function()
    local out, code = run(F .. "load_runtime_error.lua", F .. "load_error_no_position.lua", F .. "load_error.lua")
    assert.equal(code, 1, out)
    assert.is_true(has(failure_of(out, "specs/fixtures/runner/load_runtime_error.lua (loading the file)"),
      "load_runtime_error.lua:6\n   specs/fixtures/runner/load_runtime_error.lua:6: attempt to index local 't'"), out)
    assert.is_true(has(failure_of(out, "specs/fixtures/runner/load_error_no_position.lua (loading the file)"),
      "specs/fixtures/runner/load_error_no_position.lua:6: a message without a position"), out)
    assert.is_true(has(failure_of(out, "specs/fixtures/runner/load_error.lua (loading the file)"),
      "specs/fixtures/runner/load_error.lua:3: ')' expected near 'function'"), out)
    assert.equal(last_line(out), "0 passed, 3 failed, 0 skipped", out)
  end)
end)

-- Runs `gradspec run ARGS` in the background with TMPDIR pointing at a fresh
-- directory, sends SIGINT once the shell condition `ready` holds (it may
-- read "$out", the run's output, and "$d", its TMPDIR), and returns what the
-- run printed with STATUS=, CHILDREN LEFT= (its processes, found by a
-- variable in their environment, still alive) and TEMP FILES LEFT= lines.
local function interrupted_run(args, ready)
  local script = [=[
d=$(mktemp -d); out=$(mktemp)
GRADSPEC_SPEC_MARK="$d" TMPDIR="$d" "$GS" run ]=] .. args .. [=[ > "$out" 2>&1 &
pid=$!
i=0
until ]=] .. ready .. [=[; do
  i=$((i+1)); if [ $i -gt 400 ]; then echo "NEVER STARTED"; break; fi; sleep 0.025
done
kill -INT $pid
wait $pid
echo "STATUS=$?"
cat "$out"
left=0
for f in /proc/[0-9]*/environ; do
  p=${f#/proc/}; p=${p%/environ}
  if { tr '\0' '\n' < "$f"; } 2>/dev/null | grep -qx "GRADSPEC_SPEC_MARK=$d"; then left=$((left+1)); kill -9 "$p" 2>/dev/null; fi
done
echo "CHILDREN LEFT=$left"
echo "TEMP FILES LEFT=$(ls -A "$d" | wc -l)"
rm -rf "$d" "$out"
]=]
  return process.run("GS=" .. process.quote(process.self_exe()) .. "; " .. script)
end

describe("Ctrl-C", function()
  it("SIGINT stops the children, removes the results files, says so and exits 130", function()
    -- SIGINT once the hanging it has printed (--timeout bounds the hang
    -- where SIGINT does not stop it)
    local out = interrupted_run("specs/fixtures/runner/interrupt.lua specs/fixtures/runner/passing.lua --timeout 20",
      'grep -q "hanging now" "$out"')
    assert.is_false(has(out, "NEVER STARTED"), out)
    assert.is_true(has(out, "STATUS=130\n"), out)
    assert.is_true(has(out, "hanging now\n"), out)
    assert.is_true(has(out, "interrupt.lua: interrupted by SIGINT inside this it"), out)
    assert.is_true(has(out, "\ninterrupted: SIGINT stopped the run in specs/fixtures/runner/interrupt.lua; 1 spec file not run\n" ..
      "1 passed, 1 failed, 0 skipped\n"), out)
    assert.is_true(has(out, "CHILDREN LEFT=0\n"), out)
    assert.is_true(has(out, "TEMP FILES LEFT=0\n"), out)
  end)

  it("under -j 2: SIGINT stops every running child, removes the temporary files, reports in file order", function()
    -- Two files hang at once, the third never starts. Under -j a child's
    -- output goes to a temporary file in TMPDIR until its file is shown, so
    -- the script waits for the text there, and for the second file's it to
    -- have started (its "start" record in its results file).
    local out = interrupted_run("specs/fixtures/runner/interrupt.lua specs/fixtures/runner/hang.lua "
      .. "specs/fixtures/runner/passing.lua -j 2 --timeout 20",
      'grep -qs "hanging now" "$d"/* && grep -qs \'start.*hang loops forever\' "$d"/*')
    assert.is_false(has(out, "NEVER STARTED"), out)
    assert.is_true(has(out, "STATUS=130\n"), out)
    assert.is_true(has(out, "hanging now\nspecs/fixtures/runner/interrupt.lua: 1 passed, 1 failed, 0 skipped"), out)
    assert.is_true(has(out, "specs/fixtures/runner/hang.lua: 0 passed, 1 failed, 0 skipped"), out)
    assert.is_false(has(out, "passing.lua"), out)
    assert.is_true(has(out, "interrupt.lua: interrupted by SIGINT inside this it"), out)
    assert.is_true(has(out, "hang.lua: interrupted by SIGINT inside this it"), out)
    assert.is_true(has(out, "\ninterrupted: SIGINT stopped the run in specs/fixtures/runner/interrupt.lua, " ..
      "specs/fixtures/runner/hang.lua; 1 spec file not run\n1 passed, 2 failed, 0 skipped\n"), out)
    assert.is_true(has(out, "CHILDREN LEFT=0\n"), out)
    assert.is_true(has(out, "TEMP FILES LEFT=0\n"), out)
  end)
end)

describe("a run in which nothing ran", function()
  it("says so just before the summary line, and --fail-if-nothing-ran exits 1", function()
    local out, code = run(F .. "mixed.lua", "--filter", "no it has this name")
    assert.equal(code, 0, out)
    assert.equal(line_before_last(out), "nothing ran: every it was filtered out or skipped", out)
    assert.equal(last_line(out), "0 passed, 0 failed, 0 skipped", out)
    out, code = run(F .. "mixed.lua", "--filter", "is pending", "--fail-if-nothing-ran")
    assert.equal(code, 1, out)
    assert.equal(line_before_last(out), "nothing ran: every it was filtered out or skipped", out)
    assert.equal(last_line(out), "0 passed, 0 failed, 1 skipped", out)
    out, code = run(F .. "passing.lua", "--fail-if-nothing-ran")
    assert.equal(code, 0, out)
    assert.is_false(has(out, "nothing ran"), out)
  end)

  it("TAP output notes it as a comment before the summary line", function()
    local out = run(F .. "mixed.lua", "--filter", "is pending", "--output", "tap")
    assert.equal(line_before_last(out), "# nothing ran: every it was filtered out or skipped", out)
    assert.equal(last_line(out), "0 passed, 0 failed, 1 skipped", out)
  end)
end)

describe("gradspec run's command line", function()
  it("--help prints the run usage and exits 0", function()
    for _, flag in ipairs({ "--help", "-h" }) do
      local out, code = run(flag)
      assert.equal(code, 0, out)
      assert.is_true(has(out, "usage: gradspec run [options] [paths...]"), out)
      assert.is_true(has(out, "--fail-if-nothing-ran"), out)
      assert.is_true(has(out, "--load FILE"), out)
    end
  end)

  it("an unknown option lists the known ones", function()
    local out, code = run("--bogus")
    assert.equal(code, 2, out)
    assert.is_true(has(out, "unknown option --bogus; the options are --filter --tags --exclude-tags"), out)
  end)

  it("--tags or --exclude-tags naming a tag no selected file uses is a usage error listing the known tags", function()
    local out, code = run(F .. "mixed.lua", "--tags", "slow,slwo")
    assert.equal(code, 2, out)
    assert.is_true(has(out, "no selected spec file uses the tag slwo (known tags: big, cuda, gpuish, slow)"), out)
    -- the workbench's own tags (cuda, big) are known whatever the files use
    out, code = run(F .. "mixed.lua", "--exclude-tags", "cuda")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "4 passed, 3 failed, 2 skipped"), out)
    out, code = run(F .. "mixed.lua", "--tags", "gpuish", "--exclude-tags", "slow")
    assert.equal(code, 0, out)
  end)

  it("a spec file given as a script says to use gradspec run and exits 2", function()
    local out, code = process.gradspec({ "specs/runner_spec.lua" })
    assert.equal(code, 2, out)
    assert.is_true(has(out, "specs/runner_spec.lua is a spec file: use gradspec run specs/runner_spec.lua"), out)
  end)

  it("--seed reaches the child process", function()
    local out, code = run(F .. "seed.lua", "--seed", "98765")
    assert.equal(code, 0, out)
    assert.is_true(has(out, "seed in the child: 98765\n"), out)
    gs.set_seed(98765)
    local draw = string.format("%.17g", gs.randn({ 1 }):get(0))
    assert.is_true(has(out, "first draw: " .. draw .. "\n"), out)
  end)

  for _, mode in ipairs({ "isolated", "--no-isolate" }) do
    it("--load and GRADSPEC_LOAD run the file once in the process that runs the specs (" .. mode .. ")", function()
      local isolate = mode == "isolated" and "-v" or mode
      local out, code = run(F .. "load_check.lua", "--load", F .. "load_marker.lua", isolate)
      assert.equal(code, 0, out)
      assert.is_true(has(out, "loads in this process: 1\n"), out)
      out, code = run_env("GRADSPEC_LOAD=" .. F .. "load_marker.lua", F .. "load_check.lua", isolate)
      assert.equal(code, 0, out)
      assert.is_true(has(out, "loads in this process: 1\n"), out)
    end)
  end
end)

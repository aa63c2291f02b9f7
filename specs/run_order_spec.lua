-- --repeat (flaky its), --shuffle/--shuffle-seed (random order that can be
-- replayed) and --list-slowest, as a user meets them.
local process = require("gradspec.process")

local O, P = "specs/fixtures/run_order/", "specs/fixtures/parallel/"

local function has(out, text) return out:find(text, 1, true) ~= nil end

local function run(args)
  return process.gradspec({ "run", unpack(args) })
end

local function last_line(out) return out:match("([^\n]+)\n*$") end

-- The "ran X y" lines a run printed, in order.
local function ran(out)
  local seq = {}
  for name in out:gmatch("ran (%u %w+)\n") do seq[#seq + 1] = name end
  return seq
end

local ORDER_FILES = { O .. "order.lua", O .. "order_two.lua", O .. "order_three.lua" }
local FILE_ORDER = { "A a1", "A a2", "A a3", "A a4", "B b1", "B b2", "B b3", "B b4", "C c1", "D d1" }

describe("--repeat", function()
  it("runs each it N times with the seed advancing, and lists the flaky ones", function()
    local out, code = run({ O .. "flaky.lua", "--repeat", "3", "--seed", "1234", "-v" })
    assert.equal(code, 1, out)
    assert.equal(last_line(out), "8 passed, 4 failed, 0 skipped")
    assert.is_true(has(out, "PASS  flaky fails on odd seeds (run 1, seed 1234)"), out)
    assert.is_true(has(out, "FAIL  flaky fails on odd seeds (run 2, seed 1235)"), out)
    assert.is_true(has(out, "PASS  flaky fails on odd seeds (run 3, seed 1236)"), out)
    assert.is_true(has(out, "\nFlaky (passed in some --repeat runs, failed in others):\n" ..
      "  flaky fails on odd seeds (specs/fixtures/run_order/flaky.lua:4): failed 1 of 3 runs (--seed 1235)\n"), out)
    -- an it that always fails is a failure, not flaky
    assert.is_false(has(out:match("Flaky.*$"), "always fails"), out)
    -- each run draws from its own seed
    local draws = {}
    for d in out:gmatch("draw (%S+)\n") do draws[#draws + 1] = d end
    assert.equal(#draws, 3, out)
    assert.is_true(draws[1] ~= draws[2] and draws[2] ~= draws[3], out)
    -- the seed printed reproduces the failing run
    local again, acode = run({ O .. "flaky.lua", "--seed", "1235", "--filter", "odd seeds" })
    assert.equal(acode, 1, again)
    assert.equal(last_line(again), "0 passed, 1 failed, 0 skipped")
    local draw2 = run({ O .. "flaky.lua", "--seed", "1235", "--filter", "draws" }):match("draw (%S+)\n")
    assert.equal(draw2, draws[2])
  end)

  it("every run is a test case of its own in TAP and JUnit, and the flaky list goes along", function()
    local out = run({ O .. "flaky.lua", "--repeat", "2", "--seed", "1234", "--output", "tap" })
    assert.is_true(has(out, "1..8\n"), out)
    assert.is_true(has(out, "ok 1 - flaky fails on odd seeds (run 1, seed 1234)\nnot ok 2 - flaky fails on odd seeds (run 2, seed 1235)\n"), out)
    assert.is_true(has(out, "# flaky (passed in some --repeat runs, failed in others):\n" ..
      "#   flaky fails on odd seeds (specs/fixtures/run_order/flaky.lua:4): failed 1 of 2 runs (--seed 1235)\n"), out)
    out = run({ O .. "flaky.lua", "--repeat", "2", "--output", "junit" })
    assert.is_true(has(out, 'name="flaky always passes (run 2, seed 1235)"'), out)
  end)

  it("works under -j and in this process alike", function()
    local args = { O .. "flaky.lua", O .. "order.lua", "--repeat", "2" }
    local serial = run(args)
    local par = run({ O .. "flaky.lua", O .. "order.lua", "--repeat", "2", "-j", "2" })
    local here = run({ O .. "flaky.lua", O .. "order.lua", "--repeat", "2", "--no-isolate" })
    local function norm(s) return (s:gsub("%(%d+%.%d+ s%)", "")) end
    assert.equal(norm(par), norm(serial))
    assert.equal(norm(here), norm(serial))
    assert.equal(last_line(serial), "21 passed, 3 failed, 0 skipped")
  end)

  it("needs a whole number >= 1", function()
    local out, code = run({ O .. "flaky.lua", "--repeat", "0" })
    assert.equal(code, 2, out)
    assert.is_true(has(out, "--repeat needs a whole number of runs >= 1, got 0"), out)
  end)
end)

describe("--shuffle", function()
  it("prints the seed before the summary line, and --shuffle-seed replays the same order", function()
    local out, code = run({ "--shuffle", unpack(ORDER_FILES) })
    assert.equal(code, 0, out)
    local seed = out:match("\nshuffled: files and its ran in a random order; the same order again: %-%-shuffle%-seed (%d+)\n")
    assert.is_true(seed ~= nil, out)
    assert.equal(last_line(out), "10 passed, 0 failed, 0 skipped")
    local again = run({ "--shuffle-seed", seed, unpack(ORDER_FILES) })
    assert.equal(table.concat(ran(again), ","), table.concat(ran(out), ","))
    -- also under -j, where the files' output keeps the shuffled file order
    local par = run({ "--shuffle-seed", seed, "-j", "2", unpack(ORDER_FILES) })
    assert.equal(table.concat(ran(par), ","), table.concat(ran(out), ","))
  end)

  it("runs every it once, keeps each block's its together, and changes the order", function()
    local files_moved, its_moved = false, false
    for seed = 1, 6 do
      local out, code = run({ "--shuffle-seed", tostring(seed), unpack(ORDER_FILES) })
      assert.equal(code, 0, out)
      local seq = ran(out)
      local sorted = { unpack(seq) }
      table.sort(sorted)
      assert.equal(sorted, FILE_ORDER)
      -- a block's its are contiguous
      local blocks = {}
      for i, name in ipairs(seq) do
        local b = name:sub(1, 1)
        if blocks[b] then assert.equal(blocks[b], i - 1, "block " .. b .. " split: " .. table.concat(seq, ",")) end
        blocks[b] = i
      end
      local first_of = {}
      for i, name in ipairs(seq) do first_of[name:sub(1, 1)] = first_of[name:sub(1, 1)] or i end
      if not (first_of.A < first_of.C and first_of.C < first_of.D) then files_moved = true end
      for i, name in ipairs(seq) do
        local b = name:sub(1, 1)
        if (b == "A" or b == "B") and name:sub(-1) ~= tostring(i - first_of[b] + 1) then its_moved = true end
      end
    end
    assert.is_true(files_moved, "no seed moved a file")
    assert.is_true(its_moved, "no seed moved an it")
  end)

  it("--shuffle-seed needs a whole number in [0, 2^32)", function()
    local out, code = run({ O .. "order.lua", "--shuffle-seed", "-3" })
    assert.equal(code, 2, out)
    assert.is_true(has(out, "--shuffle-seed needs a whole number in [0, 2^32), got -3"), out)
  end)
end)

describe("--list-slowest", function()
  it("lists the K slowest its, slowest first, before the summary line", function()
    local out, code = run({ P .. "slow_first.lua", P .. "weights.lua", "--list-slowest", "2" })
    assert.equal(code, 0, out)
    local block = out:match("\nSlowest 2 its:\n(.-)\n\n")
    assert.is_true(block ~= nil, out)
    local lines = {}
    for l in block:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(#lines, 2, block)
    assert.is_true(lines[1]:match("^%s+%d+%.%d ms  slow first waits a while %(specs/fixtures/parallel/slow_first%.lua:4%)$") ~= nil, block)
    local t = tonumber(lines[1]:match("([%d.]+) ms"))
    assert.is_true(t >= 240, block)
    assert.equal(last_line(out), "6 passed, 0 failed, 0 skipped")
    -- TAP keeps it in comments
    out = run({ P .. "slow_first.lua", P .. "weights.lua", "--list-slowest", "1", "--output", "tap" })
    assert.is_true(has(out, "# slowest 1 its:\n#     "), out)
    out, code = run({ P .. "weights.lua", "--list-slowest", "x" })
    assert.equal(code, 2, out)
  end)
end)

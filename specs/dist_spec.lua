-- gs.dist: ranks in child processes, their collectives over shared memory
-- (backend "cpu"), what comes back to the caller, and how a rank that fails,
-- crashes or hangs fails the call.
local process = require("gradspec.process")
local C = require("gradspec.ffi").C

local function has(s, text) return tostring(s):find(text, 1, true) ~= nil end

local function run_error(R, fn, opts)
  local ok, e = pcall(gs.dist.run, R, fn, opts or { timeout = 10 })
  assert.is_false(ok, "gs.dist.run should have failed")
  return tostring(e)
end

describe("gs.dist collectives (cpu backend)", function()
  it("all_reduce sums and takes the max in place, the same bits on every rank", function()
    for R = 1, 4 do
      local res = gs.dist.run(R, function(comm)
        local r = comm.rank
        local s = gs.tensor({ r + 1, 0.1 * r, -r }, { dtype = "f32" })
        local same = comm:all_reduce(s, "sum")
        assert.is_true(same == s, "all_reduce works in place and returns its tensor")
        local m = comm:all_reduce(gs.tensor({ { r, -r }, { 2 * r, 0 } }, { dtype = "f64" }), "max")
        local i = comm:all_reduce(gs.tensor({ 2 ^ 40 + r }, { dtype = "i64" }))
        local b = comm:all_reduce(gs.tensor({ 1.5, r }, { dtype = "bf16" }))
        return { s = s, m = m, i = i, b = b }
      end)
      local sum_tenths = 0
      for r = 0, R - 1 do sum_tenths = sum_tenths + r end
      for r = 1, R do
        local g = res[r]
        assert.close(g.s, gs.tensor({ R * (R + 1) / 2, 0.1 * sum_tenths, -sum_tenths }, { dtype = "f32" }))
        assert.close(g.s, res[1].s, { rtol = 0, atol = 0 })
        assert.close(g.m, gs.tensor({ { R - 1, 0 }, { 2 * (R - 1), 0 } }, { dtype = "f64" }), { rtol = 0, atol = 0 })
        assert.equal(g.i:get(0), R * 2 ^ 40 + sum_tenths)
        assert.close(g.b, gs.tensor({ 1.5 * R, sum_tenths }, { dtype = "bf16" }))
      end
    end
  end)

  it("max propagates NaN", function()
    local res = gs.dist.run(3, function(comm)
      return comm:all_reduce(gs.tensor({ comm.rank == 1 and 0 / 0 or 1, comm.rank }), "max")
    end)
    for r = 1, 3 do
      assert.is_true(res[r]:get(0) ~= res[r]:get(0), "NaN on rank 1 makes the max NaN")
      assert.equal(res[r]:get(1), 2)
    end
  end)

  it("all_gather stacks every rank's tensor in rank order (0-D, 1-D, 2-D)", function()
    local res = gs.dist.run(3, function(comm)
      local r = comm.rank
      return {
        scalar = comm:all_gather(gs.full({}, r, { dtype = "i32" })),
        vec = comm:all_gather(gs.tensor({ r, 10 + r })),
        mat = comm:all_gather(gs.full({ 2, 3 }, r, { dtype = "f64" })),
      }
    end)
    for r = 1, 3 do
      assert.equal(table.concat(res[r].scalar:shape(), ","), "3")
      assert.close(res[r].scalar, gs.tensor({ 0, 1, 2 }, { dtype = "i32" }))
      assert.close(res[r].vec, gs.tensor({ 0, 10, 1, 11, 2, 12 }))
      assert.equal(table.concat(res[r].mat:shape(), ","), "6,3")
      assert.equal(res[r].mat:get(5, 2), 2)
      assert.equal(res[r].mat:get(2, 0), 1)
    end
  end)

  it("broadcast copies the root's tensor to every rank", function()
    local res = gs.dist.run(4, function(comm)
      local t = gs.full({ 3 }, comm.rank * 7)
      comm:broadcast(t, 2)
      return t
    end)
    for r = 1, 4 do assert.close(res[r], gs.full({ 3 }, 14)) end
  end)

  it("tensors larger than the shared slots move in chunks", function()
    local n = 700 * 1000 -- 2.8 MB of f32 per rank
    local res = gs.dist.run(2, function(comm)
      local t = gs.arange(0, n, 1, { dtype = "f32" })
      comm:all_reduce(t)
      local g = comm:all_gather(gs.full({ n }, comm.rank, { dtype = "f32" }))
      return { last = t:get(n - 1), mid = t:get(math.floor(n / 2)), g0 = g:get(n - 1), g1 = g:get(n) }
    end)
    for r = 1, 2 do
      assert.equal(res[r].last, 2 * (n - 1))
      assert.equal(res[r].mid, 2 * (math.floor(n / 2)))
      assert.equal(res[r].g0, 0)
      assert.equal(res[r].g1, 1)
    end
  end)

  it("returns each rank's value: nil, booleans, numbers (NaN, -0), strings, nested tables, tensors", function()
    local res = gs.dist.run(2, function(comm)
      if comm.rank == 1 then return nil end
      return { 1.5, true, false, "a\0b\n", { deep = { -0.0 } }, nan = 0 / 0, inf = -math.huge,
        t = gs.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "bf16" }), i = gs.tensor({ 2 ^ 53 }, { dtype = "i64" }) }
    end)
    local v = res[1]
    assert.is_true(res[2] == nil)
    assert.equal(v[1], 1.5)
    assert.is_true(v[2] == true and v[3] == false)
    assert.equal(v[4], "a\0b\n")
    assert.equal(1 / v[5].deep[1], -math.huge)
    assert.is_true(v.nan ~= v.nan)
    assert.equal(v.inf, -math.huge)
    assert.equal(v.t.dtype, "bf16")
    assert.close(v.t, gs.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "bf16" }))
    assert.equal(v.i:get(0), 2 ^ 53)
  end)
end)

describe("gs.dist: ranks that disagree, fail, crash or hang", function()
  it("ranks passing different shapes, dtypes, collectives, reductions or roots all fail alike", function()
    local e = run_error(2, function(comm) comm:all_reduce(gs.zeros({ 2, comm.rank + 1 })) end)
    assert.is_true(has(e, "all_reduce: the ranks disagree: rank 1 passed f32 {2, 2}, rank 0 passed f32 {2, 1}"), e)
    e = run_error(2, function(comm) comm:all_reduce(gs.zeros({ 3 }, { dtype = comm.rank == 0 and "f32" or "f64" })) end)
    assert.is_true(has(e, "rank 1 passed f64 {3}, rank 0 passed f32 {3}"), e)
    e = run_error(2, function(comm)
      if comm.rank == 0 then comm:all_reduce(gs.zeros({ 3 })) else comm:all_gather(gs.zeros({ 3 })) end
    end)
    assert.is_true(has(e, "rank 1 called all_gather while rank 0 called all_reduce"), e)
    e = run_error(2, function(comm) comm:all_reduce(gs.zeros({ 3 }), comm.rank == 0 and "sum" or "max") end)
    assert.is_true(has(e, "rank 1 reduces with max, rank 0 with sum"), e)
    e = run_error(2, function(comm) comm:broadcast(gs.zeros({ 3 }), comm.rank) end)
    assert.is_true(has(e, "rank 1 broadcasts from root 1, rank 0 from root 0"), e)
  end)

  it("a rank's error fails the call with the rank and its message", function()
    local e = run_error(3, function(comm)
      if comm.rank == 2 then error("no luck on this rank") end
      comm:barrier() -- ranks 0 and 1 would wait here for ever: they are killed
    end)
    assert.is_true(has(e, "rank 2 failed:"), e)
    assert.is_true(has(e, "no luck on this rank"), e)
  end)

  it("a crash and an exit from C name the rank and the signal or status", function()
    local e = run_error(2, function(comm)
      if comm.rank == 1 then require("ffi").cast("volatile int *", 0)[0] = 1 end
      comm:barrier()
    end)
    assert.is_true(has(e, "rank 1 crashed with SIGSEGV"), e)
    e = run_error(2, function(comm)
      if comm.rank == 0 then C.gs_dist_exit(7) end
      comm:barrier()
    end)
    assert.is_true(has(e, "rank 0 exited with status 7"), e)
  end)

  it("a hung rank is killed after the timeout, and the message says where each rank was", function()
    local t0 = gs.now()
    local e = run_error(3, function(comm)
      comm:barrier()
      if comm.rank == 1 then while true do end end
      comm:all_reduce(gs.zeros({ 4 }))
    end, { timeout = 0.3 })
    assert.is_true(gs.now() - t0 < 5, "the call returns soon after the timeout")
    assert.is_true(has(e, "timed out after 0.3 s"), e)
    assert.is_true(has(e, "rank 0 waiting in all_reduce (its collective call 2)"), e)
    assert.is_true(has(e, "rank 1 running its own code after 1 collectives"), e)
    -- no rank is left behind: this process has no children any more
    local pid = C.gs_dist_getpid()
    local f = io.open(string.format("/proc/%d/task/%d/children", pid, pid), "r")
    if f then
      local children = f:read("*a")
      f:close()
      assert.equal(children, "", "child processes left after the call")
    end
  end)

  it("assertions inside ranks count for the it; gradients must be asserted per rank or by the caller", function()
    local fixture = "specs/fixtures/dist/ranks.lua"
    local out, code = process.gradspec({ "run", fixture })
    assert.equal(code, 1, out)
    assert.is_true(has(out, "asserted nothing"), out)
    assert.is_true(has(out, "rank 0 failed: the gradient returned by cross_entropy at " .. fixture .. ":15 was never asserted"), out)
    assert.is_true(has(out, "gradient of rank 0 (from " .. fixture .. ":22) returned by cross_entropy at " .. fixture .. ":21"), out)
    assert.is_true(has(out, "gradient of rank 1 (from " .. fixture .. ":22)"), out)
    assert.is_true(has(out, "2 passed, 3 failed"), out)
  end)
end)

describe("gs.dist: bad arguments", function()
  it("ranks, fn, options, backend and timeout are checked before anything starts", function()
    assert.error(function() gs.dist.run(0, function() end) end, "ranks = 0 is not an integer in [1, 64]")
    assert.error(function() gs.dist.run(1.5, function() end) end, "ranks = 1.5 is not an integer")
    assert.error(function() gs.dist.run(65, function() end) end, "ranks = 65")
    assert.error(function() gs.dist.run("2", function() end) end, "ranks = 2 is not an integer")
    assert.error(function() gs.dist.run(2, "f") end, "fn must be a function, got string")
    assert.error(function() gs.dist.run(2, function() end, { backend = "mpi" }) end,
      "backend = \"mpi\" is unknown (expected \"cpu\" or \"nccl\")")
    assert.error(function() gs.dist.run(2, function() end, { timout = 3 }) end, "unknown option 'timout'")
    for _, bad in ipairs({ 0, -1, math.huge, 0 / 0, "5" }) do
      assert.error(function() gs.dist.run(2, function() end, { timeout = bad }) end, "is not a positive number of seconds")
    end
  end)

  it("nccl where it cannot run says why", function()
    local why = gs.dist.nccl_unavailable_reason(2)
    if why then
      assert.error(function() gs.dist.run(2, function() end, { backend = "nccl" }) end, "backend nccl with 2 ranks: " .. why)
    else
      assert.is_true(gs.dist.gpu_count() >= 2)
    end
  end)

  it("collective arguments: op, root, tensor, contiguity", function()
    local e = run_error(1, function(comm) comm:all_reduce(gs.zeros({ 2 }), "avg") end)
    assert.is_true(has(e, "all_reduce: op = \"avg\" is unknown (expected \"sum\" or \"max\")"), e)
    e = run_error(2, function(comm) comm:broadcast(gs.zeros({ 2 }), 2) end)
    assert.is_true(has(e, "broadcast: root = 2 is not a rank (0 to 1)"), e)
    e = run_error(1, function(comm) comm:all_gather({ 1, 2 }) end)
    assert.is_true(has(e, "all_gather: expected a tensor, got table"), e)
    e = run_error(1, function(comm) comm:all_reduce(gs.zeros({ 3, 4 }):cols_view(0, 2)) end)
    assert.is_true(has(e, "need contiguous rows"), e)
  end)
end)

-- Every plan of the CUDA cross-entropy kernels is reached and agrees with
-- the reference. Plans are forced on small inputs (gs.cuda.force_plan, as
-- GRADSPEC_CUDA_PLAN does), so that wide-row plans run in milliseconds; the
-- automatic choice is checked at the sizes that select each plan; the paths
-- beside the plans (the general kernel, the multi-block target scan, the
-- fused forward with a grad_output per row, CTAs looping over rows) are
-- counted too. Cluster plans exist where gs.cuda.clusters() is true (sm_90
-- and newer, GRADSPEC_CUDA_PORTABLE unset); elsewhere forcing one is an
-- error, and the automatic choice never takes one.
local process = require("gradspec.process")

local function i64(values) return gs.tensor(values, { dtype = "i64" }) end

local PLANS = { "resident", "resident_cluster", "resident_prefetch", "streaming", "streaming_cluster" }
local CLUSTER = { resident_cluster = true, streaming_cluster = true }

local function clusters() return gs.cuda_available() and gs.cuda.clusters() end

-- n rows of v logits (row stride v + 3) with a target in the last class, one
-- ignored row and a target in the first class.
local function inputs(n, v, dtype, seed)
  local x = gs.randn({ n, v }, { seed = seed, std = 3, dtype = dtype, stride = v + 3 })
  local t = gs.randint(0, v, { n }, { seed = seed + 1 })
  t:set(0, v - 1)
  if n > 2 then t:set(1, -100) end
  if n > 3 then t:set(2, 0) end
  return x, t
end

local CUDA = { backends = { "cuda" } }

-- The family through the plan in force, against the reference: the fused
-- forward+backward and the backward of cross entropy (hot and general
-- kernels), log_probs and entropy. Returns the number of calls made.
local function family_agrees(x, t)
  local n = x:shape()[1]
  local g = gs.randn({ n }, { seed = 5 })
  local ce = { logits = x, target = t }
  assert.backends_agree("cross_entropy", ce, { grad = true, label_smoothing = 0.1, lse_square_scale = 1e-3 }, CUDA)
  assert.backends_agree("cross_entropy_backward", { logits = x, target = t, grad_output = g },
    { reduction = "none", softcap = 5, logit_scale = 1.5, weight = gs.rand({ x:shape()[2] }, { seed = 6, low = 0.5, high = 2 }) }, CUDA)
  assert.backends_agree("log_probs", ce, {}, CUDA)
  assert.backends_agree("entropy_backward", { logits = x, grad_output = g }, { softcap = 5 }, CUDA)
  return 4
end

-- Counters after fn, from zero.
local function counted(fn)
  gs.cuda.reset_plan_counts()
  fn()
  return gs.cuda.plan_counts()
end

describe("cuda plans, forced on small inputs", { tags = { "cuda" } }, function()
  after_each(function() gs.cuda.force_plan(nil) end)

  for _, plan in ipairs(PLANS) do
    for _, dtype in ipairs({ "f32", "bf16", "f16" }) do
      it(plan .. ", " .. dtype .. ": taken by every call, and agrees with the reference", function()
        skip_if(CLUSTER[plan] and not clusters(), plan .. " needs thread-block clusters (sm_90+, GRADSPEC_CUDA_PORTABLE unset)")
        gs.cuda.force_plan(plan)
        assert.equal(gs.cuda.forced_plan(), plan)
        local x, t = inputs(7, 1003, dtype, 40)
        local calls = 0
        local counts = counted(function() calls = family_agrees(x, t) end)
        assert.is_true(counts[plan] >= calls, string.format("%s taken by each of the %d calls: %d", plan, calls, counts[plan]))
        for _, other in ipairs(PLANS) do
          if other ~= plan then assert.equal(counts[other], 0, other .. " not taken while " .. plan .. " is forced") end
        end
        assert.is_true(counts.general >= 2, "the general kernel ran (softcap, weights, entropy)")
      end)
    end
  end

  it("a cluster plan on a row too narrow to split is an error that overwrites nothing", function()
    skip_if(not clusters(), "needs thread-block clusters")
    gs.cuda.force_plan("resident_cluster")
    local x = gs.randn({ 2, 4 }, { seed = 9 })
    local dx = x:to("cuda")
    assert.error(function() gs.cross_entropy(dx, i64({ 0, 1 }):to("cuda"), { grad = true, inplace = true }) end,
      "V = 4 is too narrow")
    assert.close(dx:to("cpu"), x, { rtol = 0, atol = 0 })
  end)

  -- The register plan runs the hot kernel only (no softcap, entropy or class
  -- weights), on any row: forced, it splits rows into at least 4 CTAs where
  -- clusters exist, and reads ragged or unaligned rows column by column.
  -- The widest row fills a CTA past what its registers hold (f32: its
  -- shared-memory vectors, which come by cp.async).
  for _, dtype in ipairs({ "f32", "bf16", "f16" }) do
    it("register, " .. dtype .. ": the hot calls take it and agree with the reference, on whole and ragged rows", function()
      skip_if(not gs.cuda_available(), "needs a CUDA device")
      gs.cuda.force_plan("register")
      local n = 7
      local g = gs.randn({ n }, { seed = 7 })
      local calls = 0
      local counts = counted(function()
        for _, v in ipairs({ 1003, 1024, 9, clusters() and 100000 or 20000 }) do
          local x, t = inputs(n, v, dtype, 41)                                  -- stride v + 3: unaligned rows
          local whole = gs.randn({ n, v }, { seed = 42, std = 3, dtype = dtype })  -- contiguous
          for _, logits in ipairs({ x, whole }) do
            local ce = { logits = logits, target = t }
            assert.backends_agree("cross_entropy", ce, { grad = true, label_smoothing = 0.1, lse_square_scale = 1e-3 }, CUDA)
            assert.backends_agree("cross_entropy_backward", { logits = logits, target = t, grad_output = g },
              { reduction = "none", logit_scale = -1.5, label_smoothing = 0.2 }, CUDA)
            assert.backends_agree("log_probs", ce, {}, CUDA)
            assert.backends_agree("log_probs_backward", { logits = logits, target = t, grad_output = g }, {}, CUDA)
            calls = calls + 4
          end
        end
      end)
      assert.is_true(counts.register >= calls, string.format("register taken by each of the %d calls: %d", calls, counts.register))
      for _, other in ipairs(PLANS) do assert.equal(counts[other], 0, other .. " not taken while register is forced") end
      assert.equal(counts.general, 0, "no general kernel under the register plan")
    end)
  end

  it("register: a call that needs the general kernel is an error that overwrites nothing", function()
    skip_if(not gs.cuda_available(), "needs a CUDA device")
    gs.cuda.force_plan("register")
    local x = gs.randn({ 3, 40 }, { seed = 10 })
    local t = i64({ 0, 1, 39 }):to("cuda")
    for _, opts in ipairs({ { grad = true, inplace = true, softcap = 5 },
                            { grad = true, inplace = true, weight = gs.rand({ 40 }, { seed = 11 }):to("cuda") } }) do
      local dx = x:to("cuda")
      assert.error(function() gs.cross_entropy(dx, t, opts) end, "CUDA plan register runs the hot kernel only")
      assert.close(dx:to("cpu"), x, { rtol = 0, atol = 0 })
    end
    assert.error(function() gs.entropy(x:to("cuda")) end, "CUDA plan register runs the hot kernel only")
  end)

  it("an unknown plan is an error that lists the plans; nil and auto free the choice", function()
    skip_if(not gs.cuda_available(), "needs a CUDA device")
    assert.error(function() gs.cuda.force_plan("fast") end,
      '"fast" is not a CUDA plan (auto, resident, resident_cluster, resident_prefetch, streaming, streaming_cluster, register)')
    assert.error(function() gs.cuda.force_plan(3) end, "name is a number")
    gs.cuda.force_plan("streaming")
    gs.cuda.force_plan("auto")
    assert.equal(gs.cuda.forced_plan(), "auto")
  end)
end)

describe("cuda paths beside the plans", { tags = { "cuda" } }, function()
  after_each(function() gs.cuda.force_plan(nil) end)

  it("over 256 rows (here 9000) the target scan runs in several blocks, and finds a bad target in any of them", function()
    local x, t = inputs(9000, 8, "f32", 50)
    local counts = counted(function()
      assert.backends_agree("cross_entropy", { logits = x, target = t }, { grad = true }, CUDA)
    end)
    assert.is_true(counts.scan_multiblock >= 1, "scan_multiblock reached")
    t:set(8500, 8)
    assert.error(function() gs.cross_entropy(x:to("cuda"), t:to("cuda")) end, "target[8500] = 8 is outside [0, 8)")
  end)

  it("the fused forward+backward with a grad_output per row", function()
    local x, t = inputs(33, 700, "bf16", 60)
    local g = gs.randn({ 33 }, { seed = 61 })
    local counts = counted(function()
      assert.backends_agree("cross_entropy", { logits = x, target = t },
        { grad = true, reduction = "none", grad_output = g, label_smoothing = 0.05 }, CUDA)
    end)
    assert.is_true(counts.grad_output_rows >= 1, "grad_output_rows reached")
  end)

  -- The hot kernels (resident and streaming) find a chunk's max and sums in one pass where
  -- the chunk is whole aligned vectors (contiguous rows, V a multiple of 8
  -- bf16/f16 or 4 f32 values), in two passes elsewhere (rows of stride V + 3).
  for _, plan in ipairs({ "resident", "resident_cluster", "streaming", "streaming_cluster" }) do
    for _, dtype in ipairs({ "f32", "bf16", "f16" }) do
      it(string.format("%s, %s: one pass on whole aligned chunks, two passes on ragged ones, both agree", plan, dtype), function()
        skip_if(CLUSTER[plan] and not clusters(), plan .. " needs thread-block clusters")
        gs.cuda.force_plan(plan)
        local n, v = 6, 520
        local aligned = gs.randn({ n, v }, { seed = 80, std = 3, dtype = dtype })
        local t = gs.randint(0, v, { n }, { seed = 81 })
        t:set(0, v - 1)
        t:set(1, 0)
        t:set(2, -100)
        local one = counted(function()
          for _, opts in ipairs({ { grad = true }, { grad = true, label_smoothing = 0.1 },
                                  { grad = true, logit_scale = -1.5, label_smoothing = 0.2, reduction = "sum" } }) do
            assert.backends_agree("cross_entropy", { logits = aligned, target = t }, opts, CUDA)
          end
        end)
        assert.is_true(one.one_pass >= 3 and one.two_pass == 0,
          string.format("one_pass %d, two_pass %d on contiguous rows of %d", one.one_pass, one.two_pass, v))
        local ragged, tr = inputs(n, v + 5, dtype, 82)
        local two = counted(function()
          assert.backends_agree("cross_entropy", { logits = ragged, target = tr }, { grad = true, label_smoothing = 0.1 }, CUDA)
        end)
        assert.is_true(two.two_pass >= 1 and two.one_pass == 0,
          string.format("two_pass %d, one_pass %d on rows of stride V + 3", two.two_pass, two.one_pass))
      end)
    end
  end

  -- One pass rescales each thread's sums when a later vector raises its
  -- max; a thread's first vectors may hold only -inf or NaN, the max may be
  -- +inf, and logits near -1e30 would overflow a rescale taken from 0.
  it("one pass on nasty rows agrees with the reference (each plan that takes it)", function()
    local v = 64
    local rows = {}
    local function row(f) local r = {} for j = 1, v do r[j] = f(j) end rows[#rows + 1] = r end
    row(function(j) return j <= 40 and -math.huge or (j % 7) - 3 end)   -- -inf first, then finite
    row(function() return -math.huge end)                              -- all -inf
    row(function(j) return j == 9 and 0 / 0 or j * 0.1 end)            -- a NaN
    row(function(j) return j == 6 and math.huge or -j end)             -- +inf
    row(function(j) return -1e30 + j * 1e24 end)                       -- far below 0
    row(function(j) return j == 51 and 50 or -50 + (j % 3) end)        -- confident
    row(function(j) return (j * 37 % 64) * 0.5 end)                    -- max late, target early
    row(function(j) return j == 64 and 1e4 or j end)                   -- huge spread
    -- Near 2e6, where the register plan's one-FMA exponent rounds its
    -- offset by up to 1/8 and must take that back (at 2^22 and beyond it
    -- keeps the two-step exponent, as for -1e30 above).
    row(function(j) return 2e6 + (j % 5) * 0.25 end)
    local t = i64({ 3, 0, 2, 1, 7, 50, 0, 63, 4 })
    for _, plan in ipairs({ "resident", "resident_cluster", "streaming", "streaming_cluster", "register" }) do
      if not CLUSTER[plan] or clusters() then
        gs.cuda.force_plan(plan)
        for _, dtype in ipairs({ "f32", "bf16" }) do
          local x = gs.tensor(rows, { dtype = dtype })
          local c = counted(function()
            for _, opts in ipairs({ { grad = true, reduction = "none" }, { grad = true, reduction = "none", label_smoothing = 0.3 },
                                    { grad = true, reduction = "none", logit_scale = -0.5 } }) do
              assert.backends_agree("cross_entropy", { logits = x, target = t }, opts, CUDA)
            end
          end)
          -- The register plan has no one-pass counter: every call is counted as the plan.
          local counter = plan == "register" and "register" or "one_pass"
          assert.is_true(c[counter] >= 3, plan .. " " .. dtype .. ": " .. counter .. " reached")
        end
      end
    end
  end)

  it("persistent CTAs loop over more rows than they are (resident_prefetch)", function()
    gs.cuda.force_plan("resident_prefetch")
    local x, t = inputs(9000, 40, "f32", 70)
    local counts = counted(function()
      assert.backends_agree("cross_entropy", { logits = x, target = t }, { grad = true, reduction = "sum" }, CUDA)
    end)
    assert.is_true(counts.resident_prefetch >= 1 and counts.rows_loop >= 1, "resident_prefetch with rows_loop reached")
  end)
end)

describe("cuda plans chosen automatically", { tags = { "cuda" } }, function()
  -- What each size selects: rows of whole aligned vectors take the register
  -- plan where at most 16 CTAs hold them (one without clusters: 26624 f32 or
  -- 32768 bf16 columns each); other rows, with clusters, resident chunks as
  -- large as three CTAs per SM hold (74 KB on an H200), up to 16 CTAs a row,
  -- streaming past what 16 CTAs hold; without, one CTA a row, resident while
  -- the row fits in shared memory.
  local SIZES = {
    { n = 4, v = 1003, dtype = "f32", with = "resident", without = "resident" },
    { n = 4, v = 1000, dtype = "f32", with = "register", without = "register" },
    { n = 2, v = 128256, dtype = "bf16", with = "register", without = "streaming" },
    { n = 2, v = 128257, dtype = "bf16", with = "resident_cluster", without = "streaming" },
    { n = 2, v = 1000003, dtype = "f32", with = "streaming_cluster", without = "streaming" },
  }
  for _, s in ipairs(SIZES) do
    it(string.format("%dx%d %s", s.n, s.v, s.dtype), function()
      local plan = clusters() and s.with or s.without
      local x, t = inputs(s.n, s.v, s.dtype, 80)
      if s.v % (s.dtype == "f32" and 4 or 8) == 0 then x = x:contiguous() end  -- whole aligned rows
      local counts = counted(function()
        assert.backends_agree("cross_entropy", { logits = x, target = t }, { grad = true, label_smoothing = 0.1 }, CUDA)
      end)
      assert.is_true(counts[plan] >= 1, string.format("%s expected %s; counts: resident %d, resident_cluster %d, streaming %d, streaming_cluster %d, register %d",
        clusters() and "with clusters" or "without clusters", plan, counts.resident, counts.resident_cluster,
        counts.streaming, counts.streaming_cluster, counts.register))
      if not clusters() then assert.equal(counts.resident_cluster + counts.streaming_cluster, 0) end
    end)
  end
end)

describe("cuda device checks", { tags = { "cuda" } }, function()
  local function gradspec_e(env, code)
    return process.run(env .. " " .. process.quote(process.self_exe()) .. " -e " .. process.quote(code) .. " 2>&1")
  end

  it("GRADSPEC_CUDA_PORTABLE=1: no cluster plan, by choice or by force", function()
    local out, code = gradspec_e("GRADSPEC_CUDA_PORTABLE=1", [[
      print("clusters " .. tostring(gs.cuda.clusters()))
      local x = gs.randn({ 2, 1000003 }, { device = "cuda" })
      local t = gs.tensor({ 0, 5 }, { dtype = "i64", device = "cuda" })
      gs.cross_entropy(x, t)
      local c = gs.cuda.plan_counts()
      print("streaming " .. c.streaming .. " streaming_cluster " .. c.streaming_cluster)
      gs.cuda.force_plan("streaming_cluster")
      print(select(2, pcall(gs.cross_entropy, x, t)))
    ]])
    assert.equal(code, 0, out)
    assert.is_true(out:find("clusters false", 1, true) ~= nil, out)
    assert.is_true(out:find("streaming 1 streaming_cluster 0", 1, true) ~= nil, out)
    assert.is_true(out:find("streaming_cluster needs thread-block clusters, which GRADSPEC_CUDA_PORTABLE=1 turns off", 1, true) ~= nil, out)
  end)

  it("GRADSPEC_CUDA_PLAN names the plan from the start; a bad name is an error at the first call", function()
    local out, code = gradspec_e("GRADSPEC_CUDA_PLAN=streaming", [[
      print("forced " .. gs.cuda.forced_plan())
      gs.cross_entropy(gs.randn({ 2, 50 }, { device = "cuda" }), gs.tensor({ 0, 5 }, { dtype = "i64", device = "cuda" }))
      print("streaming " .. gs.cuda.plan_counts().streaming)
    ]])
    assert.equal(code, 0, out)
    assert.is_true(out:find("forced streaming\nstreaming 1", 1, true) ~= nil, out)
    out = gradspec_e("GRADSPEC_CUDA_PLAN=quick", [[
      print(select(2, pcall(gs.cross_entropy, gs.randn({ 2, 50 }, { device = "cuda" }), gs.tensor({ 0, 5 }, { dtype = "i64", device = "cuda" }))))
    ]])
    assert.is_true(out:find('GRADSPEC_CUDA_PLAN: "quick" is not a CUDA plan', 1, true) ~= nil, out)
  end)

  it("a device below compute capability 8.0 is a clear error naming it, not a crash", function()
    local out, code = gradspec_e("GRADSPEC_CUDA_PRETEND_CC=7.5", [[
      print("available " .. tostring(gs.cuda_available()))
      print(select(2, pcall(gs.zeros, { 2, 2 }, { device = "cuda" })))
    ]])
    assert.equal(code, 0, out)
    assert.is_true(out:find("available false", 1, true) ~= nil, out)
    assert.is_true(out:find("has compute capability 7.5: gradspec's CUDA kernels need 8.0 or newer", 1, true) ~= nil, out)
  end)
end)

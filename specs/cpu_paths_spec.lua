-- Every code path of the fast CPU kernel (kernels/cpu/cross_entropy.c) is
-- reached, and agrees with the f64 reference there. The kernel counts which
-- paths each call took (gs.cpu_paths()); each case below is sized to select
-- the paths it names, asserts that their counts rose, and compares every
-- output with the reference. A path the kernel counts that no case names
-- fails the last it, so a new path cannot go untested.
local CHUNK = gs.cpu_chunk
local FLT_MAX = 3.4028234663852886e38

local function i64(values) return gs.tensor(values, { dtype = "i64" }) end

local function rows(n, v, std, seed) return gs.randn({ n, v }, { std = std, seed = seed }) end

local cases = {
  { name = "rows wider than two chunks, a larger max in each later chunk",
    paths = { "fused_chunk", "rescale", "pass2_interleaved", "pass2_chunk", "multi_chunk_rows" },
    make = function()
      local v = 2 * CHUNK + 37
      local x = rows(4, v, 3, 1)
      for i = 0, 3 do
        x:set(i, CHUNK + 1, 20)
        x:set(i, 2 * CHUNK + 3, 30)
      end
      -- targets on both sides of a chunk boundary and in the last, partial chunk
      return x, i64({ CHUNK - 1, CHUNK, 2 * CHUNK + 36, 5 }), {}
    end },
  { name = "a logit 100 above the first one: the fused chunk is redone",
    paths = { "fused_redo", "loaded_chunk" },
    make = function()
      local x = rows(2, CHUNK + 50, 1, 2)
      x:set(0, 50, 100)
      x:set(1, CHUNK + 10, 100)
      return x, i64({ 3, CHUNK + 49 }), { reduction = "sum" }
    end },
  { name = "label smoothing: chunks loaded before they are summed",
    paths = { "loaded_chunk" },
    make = function() return rows(3, CHUNK + 50, 2, 3), i64({ 0, CHUNK + 3, 17 }), { label_smoothing = 0.1 } end },
  { name = "a first chunk of -inf only",
    paths = { "masked_prefix" },
    make = function()
      local x = rows(2, CHUNK + 20, 2, 4)
      for i = 0, 1 do
        for j = 0, CHUNK - 1 do x:set(i, j, -math.huge) end
      end
      return x, i64({ CHUNK + 1, CHUNK + 19 }), { reduction = "none" }
    end },
  { name = "label smoothing near FLT_MAX: the f32 smoothing sum overflows and is redone in f64",
    paths = { "smooth_sum_f64" },
    make = function()
      local x = gs.tensor({ { FLT_MAX, -FLT_MAX, 0 }, { FLT_MAX, -FLT_MAX, 0 } }, { dtype = "f32" })
      return x, i64({ 0, 2 }), { reduction = "none", label_smoothing = 0.5 }
    end },
  { name = "a target weight of 1e-30: pass 2 constants below FLT_MIN, written in f64",
    paths = { "pass2_f64" },
    make = function()
      local x = gs.zeros({ 2, 23 })
      x:set(0, 5, 27)
      x:set(1, 5, 27)
      local w = {}
      for j = 1, 23 do w[j] = j == 9 and 1e-30 or 0.5 end
      return x, i64({ 8, 8 }), { reduction = "sum", weight = gs.tensor(w, { dtype = "f32" }) }
    end },
  -- k1 = 2 lam lse > FLT_MAX (finite in f64): the chunk is written in f64,
  -- where a column with p_j = 0 keeps -g (eps/V) w_j. The loss, lam lse^2 =
  -- 1.2e77, is inf in f32 and finite in the reference's f64: only the
  -- gradients are compared.
  { name = "z-loss at 3.4e38 with weights and smoothing: pass 2 constants beyond FLT_MAX, written in f64",
    paths = { "pass2_f64" }, grad_only = true,
    make = function()
      local x = gs.tensor({ { FLT_MAX, 0, -FLT_MAX, 1, 2 } }, { dtype = "f32" })
      local w = gs.tensor({ 0.5, 2, 0.25, 1.5, 3 }, { dtype = "f32" })
      return x, i64({ 1 }), { reduction = "none", lse_square_scale = 1, label_smoothing = 0.2, weight = w }
    end },
  { name = "a NaN logit: non-finite pass 2 constants, the row NaN",
    paths = { "pass2_nonfinite" },
    make = function()
      local x = rows(2, 20, 1, 5)
      x:set(0, 3, 0 / 0)
      return x, i64({ 1, 2 }), { reduction = "none" }
    end },
  { name = "ignored rows", paths = { "ignored_row" },
    make = function() return rows(4, 40, 2, 6), i64({ -100, 3, -100, 39 }), {} end },
  { name = "the gradient in place of the logits", paths = { "inplace" },
    make = function() return rows(3, CHUNK + 9, 2, 7), i64({ 0, 1, CHUNK + 8 }), { inplace = true } end },
  { name = "a gradient of 16 MiB or more: streaming stores", paths = { "streaming_stores" },
    make = function()
      local n, v = 1030, 4100
      return rows(n, v, 2, 8), gs.randint(0, v, { n }, { seed = 9 }), {}
    end },
  { name = "threads = 2 on enough rows", paths = { "threads" },
    make = function() return rows(64, 4096, 2, 10), gs.randint(0, 4096, { 64 }, { seed = 11 }), { threads = 2 } end },
  { name = "bf16 logits and gradient: even/odd order", paths = { "bf16_even_odd" },
    make = function() return rows(3, 300, 2, 12):to("bf16"), i64({ 0, 299, 150 }), {} end },
}

describe("cpu kernel code paths", function()
  for _, case in ipairs(cases) do
    it(case.name .. " (" .. table.concat(case.paths, ", ") .. ")", function()
      local x, t, opts = case.make()
      opts.grad = true
      gs.cpu_paths_reset()
      if case.grad_only then
        local o = {}
        for k, v in pairs(opts) do o[k] = v end
        o.backend = "cpu"
        local loss, aux = gs.cross_entropy(x, t, o)
        o.backend = "ref"
        local want_loss, want = gs.cross_entropy(x, t, o)
        assert.all(loss, function(v) return v == math.huge end)
        assert.finite(want_loss)
        assert.close(aux.grad, want.grad, { rtol = 1e-5, atol = 0, equal_nan = true })
      else
        assert.backends_agree("cross_entropy", { logits = x, target = t }, opts, { backends = { "ref", "cpu" } })
      end
      local counts = gs.cpu_paths()
      for _, p in ipairs(case.paths) do
        assert.is_true(counts[p] ~= nil, "the kernel counts a path named " .. p)
        assert.is_true(counts[p] > 0, p .. " was reached (count " .. tostring(counts[p]) .. ")")
      end
    end)
  end

  it("threads split the rows, not the result: 1 and 2 threads give the same bits", function()
    local x, t = rows(64, 4096, 2, 14), gs.randint(0, 4096, { 64 }, { seed = 15 })
    local out = {}
    for _, n in ipairs({ 1, 2 }) do
      gs.cpu_paths_reset()
      local loss, aux = gs.cross_entropy(x, t, { backend = "cpu", grad = true, reduction = "sum", threads = n })
      out[n] = { loss = loss, grad = aux.grad, threads = gs.cpu_paths().threads }
    end
    assert.equal(out[1].threads, 0, "threads = 1 runs one worker")
    assert.equal(out[2].threads, 1, "threads = 2 runs more than one")
    assert.equal(out[2].loss, out[1].loss)
    assert.equal(out[2].grad, out[1].grad)
  end)

  it("the cases name every path the kernel counts", function()
    local named = {}
    for _, case in ipairs(cases) do
      for _, p in ipairs(case.paths) do named[p] = true end
    end
    local n = 0
    for p in pairs(gs.cpu_paths()) do
      assert.is_true(named[p], "no case reaches the path " .. p)
      n = n + 1
    end
    assert.is_true(n >= 16, "paths counted: " .. n)
  end)

  it("the counters start from zero after a reset and count only the cpu backend", function()
    gs.cpu_paths_reset()
    local x, t = rows(2, 10, 1, 13), i64({ 0, 1 })
    local loss = gs.cross_entropy(x, t, { backend = "ref" })
    assert.finite(loss)
    for p, c in pairs(gs.cpu_paths()) do assert.equal(c, 0, p) end
    loss = gs.cross_entropy(x, t, { backend = "cpu" })
    assert.finite(loss)
    assert.equal(gs.cpu_paths().fused_chunk, 2, "one fused chunk per row")
  end)
end)

-- Vocabulary-parallel cross_entropy, log_probs and entropy (docs/losses.md,
-- section 9) on 1 to 4 CPU ranks (gs.dist, backend "cpu"): each rank holds
-- a slice of the columns, and every result must equal the unsharded one:
-- the loss, lse and z_loss on every rank, the gradient as the rank's slice.

local cases = require("specs.support.vp_cases")
local shards, option_sets = cases.shards, cases.option_sets

describe("vocab-parallel on cpu ranks equals the unsharded op", function()
  for _, case in ipairs({ { "ref", "f64" }, { "cpu", "f32" } }) do
    local backend, dtype = case[1], case[2]
    for R = 1, 4 do
      it(string.format("%s %s, %d rank%s (V = 37: uneven shards), every op and option", backend, dtype, R,
        R > 1 and "s" or ""), function()
        cases.check_sets({ backend = backend, dtype = dtype, R = R })
      end)
    end
  end

  -- The cpu kernel's vector passes take 2048 columns at a time: shards of
  -- one to three such chunks, the max rising in a later one.
  for _, R in ipairs({ 1, 2 }) do
    it(string.format("cpu f32, %d rank%s over V = 4133: shards of several chunks, every op and option", R,
      R > 1 and "s" or ""), function()
      cases.check_sets({ backend = "cpu", dtype = "f32", R = R, V = 4133 })
    end)
  end

  it("cpu bf16 logits on 3 ranks, within bf16's tolerance", function()
    cases.check_sets({ backend = "cpu", dtype = "bf16", R = 3 }, { option_sets[1], option_sets[4], option_sets[8] })
  end)
end)

-- Runs fn(comm, x_local, p) on R ranks over V columns split by shards().
local function on_shards(R, x, fn)
  local parts = shards(x.cols, R)
  return gs.dist.run(R, function(comm)
    local p = parts[comm.rank]
    return fn(comm, x:cols_view(p.start, p.width):contiguous(), p)
  end, { timeout = 30 }), parts
end

describe("vocab-parallel: rows and ranks", function()
  it("ranks that own no target still give the loss and their gradient slice", function()
    local x = gs.randn({ 5, 40 }, { std = 2 })
    local t = gs.randint(0, 10, { 5 }, { dtype = "i64" }) -- all on rank 0's columns
    local loss, aux = gs.cross_entropy(x, t, { grad = true })
    local got, parts = on_shards(4, x, function(comm, xl, p)
      local l, a = gs.cross_entropy(xl, t, { grad = true, comm = comm, vocab_start = p.start })
      return { loss = l, grad = a.grad }
    end)
    for r = 0, 3 do
      assert.close(got[r + 1].loss, loss)
      assert.close(got[r + 1].grad, aux.grad:cols_view(parts[r].start, parts[r].width))
    end
    -- ranks 1 to 3 hold no target column: their gradient is the softmax part only, >= 0
    for r = 1, 3 do assert.all(got[r + 1].grad, ">=0") end
  end)

  -- One row of 32 columns, 45 in column `col` (the target) and 0 elsewhere,
  -- on 3 ranks with options o: z_t as given, so the loss is
  -- log(1 + 31 e^-z_t) ~ 31 e^-z_t and the target's gradient -31 e^-z_t dz/dx.
  local function confident_row(col, o, zt, dzdx, rtol)
    local x = gs.zeros({ 1, 32 })
    x:set(0, col, 45)
    local t = gs.tensor({ col }, { dtype = "i64" })
    local exact = 31 * math.exp(-zt) -- log(1 + 31 e^-z_t), to 1e-19 relative
    local got = on_shards(3, x, function(comm, xl, p)
      local mine = { reduction = "none", grad = true, comm = comm, vocab_start = p.start }
      for k, v in pairs(o) do mine[k] = v end
      local l, a = gs.cross_entropy(xl, t, mine)
      return { loss = l, grad = a.grad, owner = p.start <= col and col < p.start + p.width, col = col - p.start }
    end)
    for r = 1, 3 do
      assert.close(got[r].loss, gs.tensor({ exact }), { rtol = rtol, atol = 0 })
      if got[r].owner then
        assert.close(got[r].grad:get(0, got[r].col), -exact * dzdx, { rtol = rtol, atol = 0 })
      else
        assert.all(got[r].grad, ">=0") -- p_j dz/dx only: no target column here
      end
      assert.all(got[r].grad, "finite")
    end
  end

  it("a confident row keeps its digits: loss 31 e^-45 to f32 precision, with and without logit_scale", function()
    for _, scale in ipairs({ 1, 1.3 }) do
      -- z_t = s * 45 as the f32 kernel rounds it; the other z are 0
      local zt = gs.tensor({ gs.tensor({ scale }):get(0) * 45 }):get(0)
      confident_row(20, { logit_scale = scale }, zt, scale, 1e-5)
    end
  end)

  it("a confident row keeps its digits under softcap: every pass rounds z the same way", function()
    -- z_t = 60 tanh(45 / 60), about 38, and a loss of about 1e-15 from
    -- lse - z_t. Column 12 lies in a whole vector of its shard (the cpu
    -- kernel's vector passes), so a z_t rounded differently from the max
    -- would be off by an ulp of 38: a billion times the loss.
    confident_row(12, { softcap = 60 }, 60 * math.tanh(45 / 60), 1 / math.cosh(45 / 60) ^ 2, 3e-5)
  end)

  it("a maximum tied across shards counts once per column", function()
    -- two columns share the max, on different ranks: p = 1/2 each
    local x = gs.tensor({ { 3, -1e30, -1e30, -1e30, 3, -1e30 } })
    local t = gs.tensor({ 0 }, { dtype = "i64" })
    local got = on_shards(2, x, function(comm, xl, p)
      return gs.cross_entropy(xl, t, { backend = "ref", comm = comm, vocab_start = p.start })
    end)
    assert.close(got[1], math.log(2), { rtol = 1e-12 })
    assert.close(got[2], math.log(2), { rtol = 1e-12 })
  end)

  it("is deterministic: two runs give the same bits on every rank", function()
    local x = gs.randn({ 8, 301 }, { std = 4 })
    local t = gs.randint(0, 301, { 8 }, { dtype = "i64" })
    local function once()
      return on_shards(3, x, function(comm, xl, p)
        local l, a = gs.cross_entropy(xl, t, { grad = true, label_smoothing = 0.3, comm = comm, vocab_start = p.start })
        return { loss = l, grad = a.grad }
      end)
    end
    local a, b = once(), once()
    for r = 1, 3 do
      assert.close(a[r].loss, b[r].loss, { rtol = 0, atol = 0 })
      assert.close(a[r].grad, b[r].grad, { rtol = 0, atol = 0 })
      assert.close(a[r].loss, a[1].loss, { rtol = 0, atol = 0 }) -- every rank holds the same loss
    end
  end)

  it("inplace overwrites the local logits; grad_dtype f32 from bf16 logits", function()
    local x = gs.randn({ 4, 50 }, { std = 2, dtype = "bf16" })
    local t = gs.randint(0, 50, { 4 }, { dtype = "i64" })
    -- Likely targets: their gradient p_t - 1 depends on z_t, which in place
    -- must be read before the row's stores overwrite it.
    for i = 0, 3 do x:set(i, t:get(i), 7) end
    local loss, aux = gs.cross_entropy(x, t, { grad = true, grad_dtype = "f32" })
    assert.finite(loss)
    local got, parts = on_shards(2, x, function(comm, xl, p)
      local _, a1 = gs.cross_entropy(xl, t, { grad = true, grad_dtype = "f32", comm = comm, vocab_start = p.start })
      local _, a2 = gs.cross_entropy(xl, t, { grad = true, inplace = true, comm = comm, vocab_start = p.start })
      assert.is_true(a2.grad == xl, "inplace returns the logits tensor")
      return { f32 = a1.grad, inplace = a2.grad }
    end)
    for r = 0, 1 do
      local want = aux.grad:cols_view(parts[r].start, parts[r].width)
      assert.equal(got[r + 1].f32.dtype, "f32")
      assert.close(got[r + 1].f32, want, { rtol = 1e-5, atol = 1e-6 })
      assert.close(got[r + 1].inplace, want:to("bf16"))
    end
  end)

  it("zero rows give an empty result on every rank", function()
    local x = gs.zeros({ 0, 10 })
    local got = on_shards(2, x, function(comm, xl, p)
      return gs.cross_entropy(xl, gs.zeros({ 0 }, { dtype = "i64" }), { reduction = "sum", comm = comm, vocab_start = p.start })
    end)
    assert.close(got[1], 0)
    assert.close(got[2], 0)
  end)

  it("every row ignored under mean: NaN loss on every rank, zero gradient", function()
    local x = gs.randn({ 3, 11 })
    local t = gs.full({ 3 }, -100, { dtype = "i64" })
    local got = on_shards(2, x, function(comm, xl, p)
      local l, a = gs.cross_entropy(xl, t, { grad = true, comm = comm, vocab_start = p.start })
      return { loss = l, grad = a.grad }
    end)
    for r = 1, 2 do
      assert.all(got[r].loss, "nan")
      assert.close(got[r].grad, gs.zeros(got[r].grad:shape()), { rtol = 0, atol = 0 })
    end
  end)
end)

describe("vocab-parallel: bad arguments", function()
  local x = gs.randn({ 3, 12 })
  local t = gs.tensor({ 0, 5, 11 }, { dtype = "i64" })

  -- The error every rank raises, as gs.dist.run reports it (rank 0's or
  -- whichever failed first: all ranks fail alike).
  local function rank_error(R, fn)
    local ok, e = pcall(gs.dist.run, R, fn, { timeout = 10 })
    assert.is_false(ok)
    return tostring(e)
  end

  it("vocab_start must be given with comm, and comm with vocab_start", function()
    local e = rank_error(1, function(comm) gs.cross_entropy(x, t, { comm = comm }) end)
    assert.is_true(e:find("vocab_start = nil must be the first column this rank holds", 1, true) ~= nil, e)
    assert.error(function() gs.cross_entropy(x, t, { vocab_start = 0 }) end, "comm = nil is not a communicator")
    assert.error(function() gs.cross_entropy(x, t, { comm = {}, vocab_start = 0 }) end, "is not a communicator")
    e = rank_error(1, function(comm) gs.cross_entropy(x, t, { comm = comm, vocab_start = 1.5 }) end)
    assert.is_true(e:find("vocab_start = 1.5", 1, true) ~= nil, e)
  end)

  it("shards that do not tile the vocabulary in rank order are an error on every rank", function()
    local e = rank_error(2, function(comm)
      -- rank 1 starts at 7, but rank 0 holds [0, 6)
      gs.cross_entropy(x:cols_view(0, 6):contiguous(), t, { comm = comm, vocab_start = comm.rank * 7 })
    end)
    assert.is_true(e:find("rank 1 has vocab_start = 7", 1, true) ~= nil, e)
    assert.is_true(e:find("must start at 6", 1, true) ~= nil, e)
    e = rank_error(2, function(comm)
      gs.cross_entropy(gs.zeros({ 2 + comm.rank, 6 }), gs.zeros({ 2 + comm.rank }, { dtype = "i64" }),
        { comm = comm, vocab_start = comm.rank * 6 })
    end)
    assert.is_true(e:find("rows of logits", 1, true) ~= nil, e)
  end)

  it("a target outside the whole vocabulary names the row and V", function()
    local e = rank_error(2, function(comm)
      local bad = gs.tensor({ 0, 12, 3 }, { dtype = "i64" })
      gs.cross_entropy(x:cols_view(comm.rank * 6, 6):contiguous(), bad, { comm = comm, vocab_start = comm.rank * 6 })
    end)
    assert.is_true(e:find("target[1] = 12 is outside [0, 12)", 1, true) ~= nil, e)
  end)

  it("unknown options and bad option values name the op", function()
    local e = rank_error(1, function(comm) gs.cross_entropy(x, t, { comm = comm, vocab_start = 0, smoothing = 0.1 }) end)
    assert.is_true(e:find("unknown option 'smoothing'", 1, true) ~= nil, e)
    e = rank_error(1, function(comm) gs.cross_entropy(x, t, { comm = comm, vocab_start = 0, label_smoothing = 2 }) end)
    assert.is_true(e:find("label_smoothing", 1, true) ~= nil, e)
    e = rank_error(1, function(comm)
      gs.cross_entropy(x, t, { comm = comm, vocab_start = 0, weight = gs.ones({ 13 }) })
    end)
    assert.is_true(e:find("weight has shape {13}", 1, true) ~= nil, e)
  end)
end)

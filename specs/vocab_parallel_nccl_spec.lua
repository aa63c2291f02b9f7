-- Vocab-parallel on GPUs: the cuda kernels (kernels/cuda/vocab_parallel.cu)
-- and the nccl backend of gs.dist (one GPU per rank, NCCL loaded at run
-- time). Nothing in this file touches CUDA outside the ranks: a process that
-- has initialised CUDA cannot hand it to the ranks it forks, so tensors are
-- made on the host here and moved to the GPU inside each rank.
--
-- Tags (each skipped, with the reason, where its need is not met):
--   cuda_ranks  a CUDA build and 1 GPU: cuda kernels on 1 to 4 ranks that
--               share the GPU, combined through the cpu backend
--   nccl_1gpu   NCCL and 1 GPU: the nccl backend with a single rank
--   nccl        NCCL and 2 GPUs: the nccl backend on 2 ranks
local cases = require("specs.support.vp_cases")

local function has(s, text) return tostring(s):find(text, 1, true) ~= nil end

describe("vocab-parallel cuda kernels on ranks sharing a GPU", function()
  for R = 1, 4 do
    it(string.format("cuda f32, %d rank%s, every op and option, against the unsharded reference", R, R > 1 and "s" or ""),
      { tags = { "cuda_ranks" } }, function()
      cases.check_sets({ backend = "cuda", expect = "ref", dtype = "f32", R = R })
    end)
  end

  it("cuda bf16, 3 ranks, against the unsharded cpu kernel", { tags = { "cuda_ranks" } }, function()
    cases.check_sets({ backend = "cuda", expect = "cpu", dtype = "bf16", R = 3 },
      { cases.option_sets[1], cases.option_sets[4], cases.option_sets[8] })
  end)

  it("wide rows (V = 50000 on 2 ranks): cross_entropy and entropy agree with the unsharded cuda kernels run on rank 0", { tags = { "cuda_ranks" } }, function()
    local N, V = 64, 50000
    local x = gs.randn({ N, V }, { std = 3, dtype = "bf16" })
    local t = gs.randint(0, V, { N }, { dtype = "i64" })
    local parts = cases.shards(V, 2)
    local got = gs.dist.run(2, function(comm)
      local p = parts[comm.rank]
      local o = { grad = true, label_smoothing = 0.1, comm = comm, vocab_start = p.start }
      local xl = x:cols_view(p.start, p.width):contiguous():to("cuda")
      local loss, aux = gs.cross_entropy(xl, t:to("cuda"), o)
      local eo = { softcap = 20, comm = comm, vocab_start = p.start }
      local out = { loss = loss, grad = aux.grad, ent = gs.entropy(xl, eo), ent_grad = gs.entropy_backward(xl, 1, eo) }
      if comm.rank == 0 then
        local xf = x:to("cuda")
        local l1, a1 = gs.cross_entropy(xf, t:to("cuda"), { grad = true, label_smoothing = 0.1 })
        out.full_loss, out.full_grad = l1, a1.grad
        out.full_ent = gs.entropy(xf, { softcap = 20 })
        out.full_ent_grad = gs.entropy_backward(xf, 1, { softcap = 20 })
      end
      return out
    end, { timeout = 120 })
    for r = 0, 1 do
      local p = parts[r]
      assert.close(got[r + 1].loss, got[1].full_loss, { rtol = 1e-5, atol = 1e-6 })
      assert.close(got[r + 1].grad, got[1].full_grad:cols_view(p.start, p.width))
      assert.close(got[r + 1].ent, got[1].full_ent, { rtol = 1e-5, atol = 1e-5 })
      assert.close(got[r + 1].ent_grad, got[1].full_ent_grad:cols_view(p.start, p.width))
    end
  end)
end)

describe("gs.dist over NCCL", function()
  local function collectives(R)
    local res = gs.dist.run(R, function(comm)
      local r = comm.rank
      local s = comm:all_reduce(gs.tensor({ r + 1, -r }, { dtype = "f32" }):to("cuda"), "sum")
      local m = comm:all_reduce(gs.tensor({ r, -r }, { dtype = "f64" }):to("cuda"), "max")
      local g = comm:all_gather(gs.tensor({ { r, 10 + r } }, { dtype = "bf16" }):to("cuda"))
      local b = comm:broadcast(gs.full({ 3 }, 5 * r, { dtype = "i64" }):to("cuda"), R - 1)
      local host = comm:all_reduce(gs.tensor({ 1, 2 }), "sum") -- host tensors are staged through the GPU
      return { s = s, m = m, g = g, b = b, host = host, device = s.device }
    end, { backend = "nccl", timeout = 120 })
    local sum_r = R * (R - 1) / 2
    for r = 1, R do
      local v = res[r]
      assert.equal(v.device, "cuda")
      assert.close(v.s, gs.tensor({ sum_r + R, -sum_r }, { dtype = "f32" }))
      assert.close(v.m, gs.tensor({ R - 1, 0 }, { dtype = "f64" }))
      assert.equal(v.g:shape()[1], R)
      assert.equal(v.g:get(R - 1, 1), 10 + R - 1)
      assert.close(v.b, gs.full({ 3 }, 5 * (R - 1), { dtype = "i64" }))
      assert.close(v.host, gs.tensor({ R, 2 * R }))
    end
  end

  it("one rank on one GPU: all_reduce, all_gather, broadcast", { tags = { "nccl_1gpu" } }, function()
    collectives(1)
  end)

  it("two ranks on two GPUs: all_reduce, all_gather, broadcast", { tags = { "nccl" } }, function()
    collectives(2)
  end)

  it("ranks that disagree fail alike before NCCL is called", { tags = { "nccl" } }, function()
    local ok, e = pcall(gs.dist.run, 2, function(comm)
      comm:all_reduce(gs.zeros({ comm.rank + 1 }):to("cuda"))
    end, { backend = "nccl", timeout = 120 })
    assert.is_false(ok)
    assert.is_true(has(e, "rank 1 passed f32 {2}, rank 0 passed f32 {1}"), e)
  end)

  it("vocab-parallel cuda over NCCL, 1 rank, every op and option", { tags = { "nccl_1gpu" } }, function()
    cases.check_sets({ backend = "cuda", expect = "ref", dtype = "f32", R = 1, comm = "nccl" })
  end)

  it("vocab-parallel cuda over NCCL, 2 ranks on 2 GPUs, every op and option", { tags = { "nccl" } }, function()
    cases.check_sets({ backend = "cuda", expect = "ref", dtype = "f32", R = 2, comm = "nccl" })
    cases.check_sets({ backend = "cuda", expect = "cpu", dtype = "bf16", R = 2, comm = "nccl" },
      { cases.option_sets[1], cases.option_sets[8] })
  end)
end)

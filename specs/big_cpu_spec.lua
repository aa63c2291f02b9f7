-- The CPU kernel past 2^31 elements: bf16 logits of 2^31 + a few rows'
-- elements (4 GiB), the gradient in place, so that a 32-bit element or byte
-- offset anywhere (row * stride, a chunk's start, the target's column)
-- would wrap. The rows around and past the boundary are random and are
-- checked against the f64 reference run on copies of just those rows; the
-- rows before them are zeros, whose loss is log V (the reference is never
-- run on billions of elements).
--
-- About 4.1 GB of memory and 20 s on 2 cores: it runs only where
-- GRADSPEC_BIG=1 is set, as .ci/run does:
--   GRADSPEC_BIG=1 build/gradspec run specs/big_cpu_spec.lua --tags big
local CHUNK = gs.cpu_chunk
local V = 2 * CHUNK + 37                 -- rows wider than two chunks: offsets inside a row cross too
local FIRST = math.floor(2 ^ 31 / V) - 1 -- the last row before the one that holds element 2^31
local N = FIRST + 6
local TAIL = N - FIRST                   -- rows FIRST .. N - 1 are checked

-- values first .. first + count - 1 of a 1-D tensor, as a new tensor
local function slice(t, first, count, dtype)
  local out = {}
  for k = 1, count do out[k] = t:get(first + k - 1) end
  return gs.tensor(out, { dtype = dtype or "f64" })
end

describe("cpu kernel past 2^31 elements", { tags = { "big" } }, function()
  skip_if(os.getenv("GRADSPEC_BIG") ~= "1", "needs GRADSPEC_BIG=1 (4 GiB of logits; .ci/run sets it)")

  it("bf16 logits in place: the rows past element 2^31 agree with the reference on copies of them", function()
    assert.is_true((FIRST + 1) * V <= 2 ^ 31 and (FIRST + 2) * V > 2 ^ 31, "row FIRST + 1 holds element 2^31")
    local x = gs.zeros({ N, V }, { dtype = "bf16" })
    local tail = gs.randn({ TAIL, V }, { std = 3, seed = 31 }):to("bf16")
    x:rows_view(FIRST, TAIL):copy_(tail)
    local t = gs.randint(0, V, { N }, { seed = 32, dtype = "i64" })
    -- targets in the last chunk and the last column, and an ignored row, past the boundary
    t:set(FIRST + 1, V - 1)
    t:set(FIRST + 2, 2 * CHUNK + 5)
    t:set(FIRST + 3, -100)
    local tt = slice(t, FIRST, TAIL, "i64")

    local loss, aux = gs.cross_entropy(x, t, { backend = "cpu", reduction = "none", grad = true, inplace = true })
    local want, want_aux = gs.cross_entropy(tail, tt, { backend = "ref", reduction = "none", grad = true })

    assert.all(want, ">=0")
    assert.all(loss, ">=0")
    assert.close(slice(loss, FIRST, TAIL), want, { rtol = 1e-5, atol = 1e-6, msg = "loss of the rows past 2^31" })
    assert.close(slice(aux.lse, FIRST, TAIL), want_aux.lse, { rtol = 1e-6, atol = 1e-6, msg = "lse" })
    -- bf16 gradients: the reference rounds to nearest even, the kernel ties
    -- away from zero; both within half a bf16 spacing of the f64 value
    assert.close(aux.grad:rows_view(FIRST, TAIL), want_aux.grad,
      { rtol = 2 ^ -7, atol = 1e-9, msg = "gradient of the rows past 2^31" })
    assert.equal(aux.grad:get(FIRST + 3, V - 1), 0, "the ignored row's gradient is zero")
    -- the zero rows before: uniform softmax, loss log V, gradient 1/V - [j == t]
    local logv = math.log(V)
    for _, i in ipairs({ 0, FIRST - 1 }) do
      assert.close(loss:get(i), logv, { rtol = 1e-5, msg = "loss of zero row " .. i })
      local col = (t:get(i) + 1) % V
      assert.close(aux.grad:get(i, col), 1 / V, { rtol = 2 ^ -8, msg = "gradient of zero row " .. i })
    end
  end)
end)

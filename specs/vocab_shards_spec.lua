-- gradspec.vocab_shards: the vocabulary split that the vocab-parallel
-- benchmark and specs share.
local shards = require("gradspec.vocab_shards")

local function widths(parts, R)
  local out = {}
  for r = 0, R - 1 do out[#out + 1] = parts[r].width end
  return out
end

describe("vocab_shards", function()
  it("splits V over R ranks with the first V % R ranks one wider", function()
    assert.equal(widths(shards.shards(37, 4), 4), { 10, 9, 9, 9 })
    assert.equal(widths(shards.shards(128256, 3), 3), { 42752, 42752, 42752 })
    assert.equal(widths(shards.shards(2, 3), 3), { 1, 1, 0 })
  end)

  it("tiles [0, V) in rank order", function()
    for _, c in ipairs({ { 37, 1 }, { 37, 4 }, { 1001, 3 }, { 5, 8 } }) do
      local V, R = c[1], c[2]
      local parts, at = shards.shards(V, R), 0
      for r = 0, R - 1 do
        assert.equal(parts[r].start, at)
        at = at + parts[r].width
      end
      assert.equal(at, V)
      assert.equal(parts[R], nil)
    end
  end)

  it("refuses a V or R that is not a whole number in range, naming it", function()
    assert.error(function() shards.shards(37, 0) end, "vocab_shards: R = 0 must be an integer >= 1")
    assert.error(function() shards.shards(3.5, 2) end, "vocab_shards: V = 3.5 must be an integer >= 0")
    assert.error(function() shards.shards("37", 2) end, "vocab_shards: V = \"37\" must be an integer >= 0")
  end)

  it("columns gives a rank its own contiguous copy of its columns", function()
    local x = gs.tensor({ { 0, 1, 2, 3, 4 }, { 5, 6, 7, 8, 9 } })
    local p = shards.shards(5, 2)[1] -- columns 3 and 4
    local mine = shards.columns(x, p)
    assert.equal(mine:shape(), { 2, 2 })
    assert.equal(mine.stride, 2)
    assert.equal({ mine:get(0, 0), mine:get(0, 1), mine:get(1, 0), mine:get(1, 1) }, { 3, 4, 8, 9 })
    mine:set(0, 0, -1)
    assert.equal(x:get(0, 3), 3)
  end)

  it("rank_opts copies the options with the rank's comm and first column, leaving the caller's table", function()
    local comm = { rank = 1, size = 2 }
    local opts = { grad = true, reduction = "sum" }
    local o = shards.rank_opts(opts, comm, { start = 19, width = 18 })
    assert.is_true(o.comm == comm)
    assert.equal(o.vocab_start, 19)
    assert.equal(o.grad, true)
    assert.equal(o.reduction, "sum")
    assert.equal(opts.comm, nil)
    assert.equal(opts.vocab_start, nil)
  end)

  it("inputs draws std-2 logits and in-range i64 targets, the same again for the same seeds", function()
    local x, t = shards.inputs(64, 50, "f32", { logits = 11, target = 5 })
    assert.equal(x:shape(), { 64, 50 })
    assert.equal(x.dtype, "f32")
    assert.equal(t.dtype, "i64")
    assert.all(t, ">=0")
    assert.all(t, function(v) return v < 50 end)
    local sum, sq = 0, 0
    for r = 0, 63 do
      for c = 0, 49 do
        local v = x:get(r, c)
        sum, sq = sum + v, sq + v * v
      end
    end
    local n = 64 * 50
    assert.is_true(math.abs(math.sqrt(sq / n - (sum / n) ^ 2) - 2) < 0.15, "std " .. math.sqrt(sq / n))
    local x2, t2 = shards.inputs(64, 50, "f32", { logits = 11, target = 5 })
    assert.equal(x2, x)
    assert.equal(t2, t)
    local x3 = shards.inputs(64, 50, "f32", { logits = 12, target = 5 })
    assert.is_true(x3:get(0, 0) ~= x:get(0, 0))
  end)
end)

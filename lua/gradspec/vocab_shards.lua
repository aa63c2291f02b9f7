-- The vocabulary split over ranks, as callers of the vocab-parallel path
-- (gradspec.vocab_parallel) build it: bench/vocab_parallel.lua and the
-- vocab-parallel specs use these, so that they shard alike.
local T = require("gradspec.tensor")

local M = {}

local function whole(x, name, min)
  if type(x) ~= "number" or x ~= math.floor(x) or x < min then
    local shown = type(x) == "string" and string.format("%q", x) or tostring(x)
    error(string.format("vocab_shards: %s = %s must be an integer >= %d", name, shown, min), 3)
  end
end

-- Column ranges {start, width} of V over R ranks, indexed by rank from 0,
-- tiling [0, V) in rank order as the op requires; the first V % R ranks
-- are one wider: V = 37 on 4 ranks is 10, 9, 9, 9.
function M.shards(V, R)
  whole(V, "V", 0)
  whole(R, "R", 1)
  local out, start = {}, 0
  for r = 0, R - 1 do
    local width = math.floor(V / R) + (r < V % R and 1 or 0)
    out[r] = { start = start, width = width }
    start = start + width
  end
  return out
end

-- A rank's own copy of its columns of the whole logits x, contiguous, on
-- device (default: where x is).
function M.columns(x, shard, device)
  local mine = x:cols_view(shard.start, shard.width):contiguous()
  return device and mine:to(device) or mine
end

-- A copy of the option table opts for the rank that holds shard, with its
-- communicator and first column set (the caller's table is left as it is).
function M.rank_opts(opts, comm, shard)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.comm, o.vocab_start = comm, shard.start
  return o
end

-- Whole N x V logits, normal with std 2 (a softmax that is neither flat
-- nor one-hot), in dtype, and N i64 targets uniform in [0, V). seeds:
-- {logits = S, target = S} for draws that do not depend on the run's seed.
function M.inputs(N, V, dtype, seeds)
  seeds = seeds or {}
  local x = T.randn({ N, V }, { std = 2, dtype = dtype, seed = seeds.logits })
  local t = T.randint(0, V, { N }, { dtype = "i64", seed = seeds.target })
  return x, t
end

return M

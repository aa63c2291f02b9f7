-- Vocabulary-parallel fused cross entropy (forward + backward) on GPUs:
-- R ranks over NCCL, each holding V/R columns, against the unsharded CUDA
-- kernel on one GPU, measured in the same run. Times are wall-clock per
-- call from a barrier to the call's return (its collectives and the row
-- assembly on the host included), the slowest rank's, median of --reps.
--
-- Run on the GPU machine: build-gpu/gradspec bench/vocab_parallel.lua
--   [--rows 8192] [--vocab 128256] [--dtype bf16] [--reps 10] [--ranks 2]
--   [--device cpu: the same on CPU ranks and the cpu kernels, a smoke test]
-- NCCL as for gs.dist (GRADSPEC_NCCL names the library file).
local shards = require("gradspec.vocab_shards")

local USAGE = "usage: gradspec bench/vocab_parallel.lua [--rows N] [--vocab V] [--dtype bf16|f16|f32] [--reps K] [--ranks R] [--device cuda|cpu] [--smoothing EPS] [--softcap C]"
-- A bad argument ends the run with its name, its value and the usage line (status 2).
local function usage(fmt, ...)
  io.stderr:write("bench/vocab_parallel.lua: ", string.format(fmt, ...), "\n", USAGE, "\n")
  os.exit(2)
end
local opts = { rows = 8192, vocab = 128256, dtype = "bf16", reps = 10, ranks = 2, device = "cuda", smoothing = 0, softcap = 0 }
do
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-(%w+)$")
    if not k or opts[k] == nil then usage("unknown argument %s", arg[i]) end
    local v = arg[i + 1]
    if v == nil then usage("--%s needs a value", k) end
    if k == "dtype" or k == "device" then
      opts[k] = v
    elseif k == "smoothing" then
      local x = tonumber(v)
      if not x or x < 0 or x > 1 then usage("--smoothing needs a number in [0, 1], got %s", v) end
      opts[k] = x
    elseif k == "softcap" then
      local x = tonumber(v)
      if not x or x < 0 or x == math.huge then usage("--softcap needs a finite number >= 0 (0: none), got %s", v) end
      opts[k] = x
    else
      local x = tonumber(v)
      if not x or x ~= math.floor(x) or x < 1 then usage("--%s needs a whole number >= 1, got %s", k, v) end
      opts[k] = x
    end
    i = i + 2
  end
  if opts.dtype ~= "bf16" and opts.dtype ~= "f16" and opts.dtype ~= "f32" then usage("--dtype must be bf16, f16 or f32, got %s", opts.dtype) end
  if opts.device ~= "cuda" and opts.device ~= "cpu" then usage("--device must be cuda or cpu, got %s", opts.device) end
  if opts.ranks > opts.vocab then usage("--ranks %d is more than the %d columns of --vocab", opts.ranks, opts.vocab) end
  if opts.device == "cuda" and gs.dist.gpu_count() == 0 then
    usage("--device cuda, but no GPU is visible (gs.dist.gpu_count() is 0); --device cpu runs the same on CPU ranks")
  end
end
local N, V = opts.rows, opts.vocab

local function median(list)
  table.sort(list)
  local n = #list
  return n % 2 == 1 and list[(n + 1) / 2] or (list[n / 2] + list[n / 2 + 1]) / 2
end

-- The same logits whatever R, drawn once here: the forked ranks share them
-- and each copies its columns to its GPU.
local full, target = shards.inputs(N, V, opts.dtype, { logits = 11, target = 5 })

-- Per rank: its shard of the logits on its device; `unsharded` times the
-- single-device kernel over all V columns instead (one rank). Two ways:
-- the gradient in a new tensor, and written over the logits (inplace; the
-- reps after the first then run on gradients, which costs the same). The
-- loss is the first call's: the same on every line, since the sharded runs
-- compute the unsharded loss.
local function measure(R, backend, unsharded)
  local parts = shards.shards(V, R)
  local res = gs.dist.run(R, function(comm)
    local p = parts[comm.rank]
    local x = shards.columns(full, p, opts.device)
    local t = target:to(opts.device)
    local out = {}
    for _, inplace in ipairs({ false, true }) do
      local o = { grad = true, inplace = inplace, label_smoothing = opts.smoothing,
        softcap = opts.softcap > 0 and opts.softcap or nil }
      if not unsharded then o = shards.rank_opts(o, comm, p) end
      local times, loss = {}, nil
      for k = 0, opts.reps do -- call 0 warms up
        comm:barrier()
        local t0 = gs.now()
        local l = gs.cross_entropy(x, t, o)
        local value = l:to("cpu"):item() -- waits for the device
        local dt = gs.tensor({ gs.now() - t0 }, { dtype = "f64" })
        local slowest = comm:all_reduce(dt, "max"):get(0)
        if k == 0 then loss = value else times[#times + 1] = slowest end
        collectgarbage()
        collectgarbage() -- frees the last call's gradient now, not at some later collection
      end
      local med = median(times)
      out[inplace and "inplace" or "new"] = { median = med, min = times[1], loss = loss }
    end
    return out
  end, { backend = opts.device == "cpu" and "cpu" or backend, timeout = 600 })
  return res[1]
end

local gib = N * V * 2 * (opts.dtype == "f32" and 4 or 2) / 2 ^ 30 -- logits read + gradient written
print(string.format("vocab-parallel fused cross entropy forward+backward, %d x %d %s on %s%s (%.2f GiB moved per call)",
  N, V, opts.dtype, opts.device, (opts.smoothing > 0 and string.format(", label_smoothing %g", opts.smoothing) or "") ..
  (opts.softcap > 0 and string.format(", softcap %g", opts.softcap) or ""), gib))
local nccl, why = gs.dist.nccl_info()
print(nccl and string.format("NCCL %d from %s", nccl.version, nccl.path) or ("NCCL unavailable: " .. tostring(why)))
local gpus = opts.device == "cpu" and opts.ranks or gs.dist.gpu_count()
print(string.format("%d device(s); median of %d calls, ms (min), the slowest rank's, first call's loss", gpus, opts.reps))

local function line(label, m, base)
  local ratio = base and string.format("   %.2fx / %.2fx the 1-device time", m.new.median / base.new.median,
    m.inplace.median / base.inplace.median) or ""
  print(string.format("  %-40s new grad %8.3f (%8.3f)   inplace %8.3f (%8.3f)   loss %.6f%s", label,
    m.new.median * 1e3, m.new.min * 1e3, m.inplace.median * 1e3, m.inplace.min * 1e3, m.new.loss, ratio))
end

local base = measure(1, "cpu", true)
line("1 device, unsharded kernel", base)
if nccl or opts.device == "cpu" then line("1 device, vocab-parallel R=1", measure(1, "nccl", false), base) end
local R = opts.ranks
if R == 1 then
  -- measured above
elseif not nccl and opts.device ~= "cpu" then
  print(string.format("  %d GPUs: not run (NCCL unavailable)", R))
elseif gpus < R then
  print(string.format("  %d GPUs were not available (%d visible): only R = 1 was measured", R, gpus))
else
  line(string.format("%d devices, vocab-parallel R=%d", R, R), measure(R, "nccl", false), base)
end

-- Registers ce_kernel.cu as the gradspec backend "cuda_example": f32
-- logits on the GPU, options reduction and ignore_index, ops cross_entropy
-- (with the fused gradient), cross_entropy_backward and log_probs.
--
--   gradspec run --load examples/cuda_kernel/register.lua examples/cuda_kernel/ce_kernel_spec.lua
--
-- (ce_kernel_spec.lua also runs this file itself when the backend is not
-- registered yet.) The kernel is compiled with NVRTC at its first use, so
-- registering costs nothing and works anywhere; where there is no GPU or
-- no NVRTC the backend is unavailable and its calls are skipped with the
-- reason. GS_EXAMPLE_BUG=sign|ignore|oob compiles it with a planted bug
-- (see ce_kernel.cu).
local gs = require("gradspec")
local cuda = gs.cuda or require("gradspec.cuda")

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local BLOCK = 256 -- threads per block, one block per row

local bugs = { sign = "-DBUG_SIGN", ignore = "-DBUG_IGNORE", oob = "-DBUG_OOB" }
local options = { "-DCE_BLOCK=" .. BLOCK }
local bug = os.getenv("GS_EXAMPLE_BUG")
if bug and bug ~= "" then
  if not bugs[bug] then error("GS_EXAMPLE_BUG=" .. bug .. " is not sign, ignore or oob", 0) end
  options[#options + 1] = bugs[bug]
end

-- The kernels, compiled once, at the first call.
local k
local function kernels()
  if k then return k end
  local mod = cuda.compile(here .. "ce_kernel.cu", { options = options })
  k = {
    forward = mod:kernel("ce_forward", { "ptr", "i64", "ptr", "i64", "i64", "ptr", "ptr", "ptr", "i64", "ptr",
      "i64", "f32", "ptr", "ptr" }),
    backward = mod:kernel("ce_backward", { "ptr", "i64", "ptr", "i64", "i64", "ptr", "i64", "ptr", "i64", "f32",
      "ptr", "ptr" }),
    log_probs = mod:kernel("ce_log_probs", { "ptr", "i64", "ptr", "i64", "i64", "ptr", "ptr" }),
    count = mod:kernel("ce_count", { "ptr", "i64", "i64", "ptr" }),
    reduce = mod:kernel("ce_reduce", { "ptr", "i64", "ptr", "ptr" }),
  }
  return k
end

-- The kernels read int64 targets.
local function as_i64(t) return t:to("i64"):contiguous() end

-- The kernels record the first row whose target is outside [0, V) in a flag
-- that starts above every row index.
local NO_BAD_ROW = 2 ^ 62
local function bad_row_flag() return gs.full({ 1 }, NO_BAD_ROW, { dtype = "i64", device = "cuda" }) end

local function check_targets(op, flag, t, v)
  local row = flag:get(0)
  if row ~= NO_BAD_ROW then
    error(string.format("%s: target[%d] = %d is outside [0, %d)", op, row, t:get(row), v), 0)
  end
end

-- Each gradient row is followed by one guard element holding CANARY: the
-- gradient is a view of an N x (V + 1) buffer. A kernel that writes past
-- the end of a row changes a guard, and check_guards says so at once, on
-- any row; compute-sanitizer would not notice, since the write stays inside
-- the allocation.
local CANARY = -2 ^ 100 -- exact in f32, and no gradient value
local function guarded_grad(n, v)
  local buf = gs.full({ n, v + 1 }, CANARY, { device = "cuda" })
  return buf:cols_view(0, v), buf
end

local function check_guards(op, buf, v)
  local guards = buf:cols_view(v, 1):to("cpu")
  for i = 0, guards.rows - 1 do
    local x = guards:get(i, 0)
    if x ~= CANARY then
      error(string.format("%s: the kernel wrote past the end of gradient row %d (the element after it holds %.9g)",
        op, i, x), 0)
    end
  end
end

-- The kernels' (grad_output, grad_output_n, grad_scale) for a grad_output
-- that is nil, a number, or a tensor of 1 or N values.
local function grad_output_args(g)
  if g == nil or g == false then return cuda.null, 0, 1 end
  if type(g) == "number" then return cuda.null, 0, g end
  g = g:to("f32"):contiguous()
  return g, g:numel(), 1
end

-- Under "mean", the count of rows not ignored (on the device), else NULL.
local function mean_count(opts, t, n)
  if opts.reduction ~= "mean" then return cuda.null end
  local count = gs.zeros({ 1 }, { device = "cuda" })
  kernels().count:launch(1, BLOCK, nil, t, n, opts.ignore_index, count)
  return count
end

local function cross_entropy(x, t, opts)
  local kk = kernels()
  local n, v = x.rows, x.cols
  t = as_i64(t)
  local per_row = gs.zeros({ n }, { device = "cuda" })
  local lse = gs.zeros({ n }, { device = "cuda" })
  local count = mean_count(opts, t, n)
  local grad, guarded = cuda.null, nil
  if opts.grad then grad, guarded = guarded_grad(n, v) end
  local go, go_n, scale = grad_output_args(opts.grad_output)
  local flag = bad_row_flag()
  if n > 0 then
    kk.forward:launch(n, BLOCK, nil, x, x.stride, t, v, opts.ignore_index, per_row, lse, grad,
      guarded and guarded.stride or 0, go, go_n, scale, count, flag)
  end
  check_targets("cross_entropy", flag, t, v)
  if guarded then check_guards("cross_entropy", guarded, v) end
  local loss = per_row
  if opts.reduction ~= "none" then
    loss = gs.zeros({}, { device = "cuda" })
    kk.reduce:launch(1, BLOCK, nil, per_row, n, count, loss)
  end
  return loss, { lse = lse, grad = guarded and grad or nil }
end

local function cross_entropy_backward(x, t, grad_output, opts)
  local kk = kernels()
  local n, v = x.rows, x.cols
  t = as_i64(t)
  local count = mean_count(opts, t, n)
  local grad, guarded = guarded_grad(n, v)
  local go, go_n, scale = grad_output_args(grad_output)
  local flag = bad_row_flag()
  if n > 0 then
    kk.backward:launch(n, BLOCK, nil, x, x.stride, t, v, opts.ignore_index, grad, grad.stride, go, go_n, scale,
      count, flag)
  end
  check_targets("cross_entropy_backward", flag, t, v)
  check_guards("cross_entropy_backward", guarded, v)
  return grad
end

local function log_probs(x, t, opts)
  local n, v = x.rows, x.cols
  t = as_i64(t)
  local out = gs.zeros({ n }, { device = "cuda" })
  local flag = bad_row_flag()
  if n > 0 then kernels().log_probs:launch(n, BLOCK, nil, x, x.stride, t, v, opts.ignore_index, out, flag) end
  check_targets("log_probs", flag, t, v)
  return out
end

gs.backend.register("cuda_example", {
  device = "cuda", dtypes = { "f32" }, options = { "reduction", "ignore_index" },
  -- Without NVRTC the kernel cannot be built: skip, saying so.
  available = function()
    local version, why = cuda.nvrtc_version()
    return version ~= nil or ("cannot compile ce_kernel.cu: " .. why)
  end,
  ops = { cross_entropy = cross_entropy, cross_entropy_backward = cross_entropy_backward, log_probs = log_probs },
})

-- assert.backends_agree: runs one op on every available backend with the same
-- inputs and compares every output with the reference backend's.
local ops = require("gradspec.ops")
local A = require("gradspec.assert")

local M = {}

-- What each op returns, as named outputs.
local runners = {
  cross_entropy = function(x, inp, opts)
    local loss, aux = ops.cross_entropy(x, inp.target, opts)
    return { loss = loss, lse = aux.lse, z_loss = aux.z_loss, grad = aux.grad }
  end,
  cross_entropy_backward = function(x, inp, opts)
    return { grad = ops.cross_entropy_backward(x, inp.target, inp.grad_output, opts) }
  end,
  log_probs = function(x, inp, opts) return { result = ops.log_probs(x, inp.target, opts) } end,
  log_probs_backward = function(x, inp, opts)
    return { grad = ops.log_probs_backward(x, inp.target, inp.grad_output, opts) }
  end,
  entropy = function(x, inp, opts) return { result = ops.entropy(x, opts) } end,
  entropy_backward = function(x, inp, opts) return { grad = ops.entropy_backward(x, inp.grad_output, opts) } end,
}
M.ops = runners

local function on(device, t)
  if t == nil or type(t) == "number" then return t end
  return t:to(device)
end

local function copy_opts(opts, backend, device)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.backend = backend
  if o.weight then o.weight = o.weight:to(device) end
  if type(o.grad_output) == "table" then o.grad_output = o.grad_output:to(device) end
  return o
end

-- Tolerance for comparing an output of dtype dt: the dtype's own for
-- low-precision gradients, f32 accumulation error otherwise.
local function tolerance(dt, tol)
  if tol then return tol end
  if dt == "bf16" or dt == "f16" then return { rtol = A.tolerances[dt].rtol, atol = 1e-4 } end
  return { rtol = 2e-5, atol = 2e-6 }
end

-- inputs: {logits =, target =, grad_output =}; opts: the op's options;
-- check: {backends = {...}, tol = {rtol, atol}} (defaults: every available
-- backend; per-dtype tolerances). Counts as one assertion.
function M.backends_agree(op, inputs, opts, check)
  check = check or {}
  local run = runners[op]
  if not run then error("backends_agree: unknown op '" .. tostring(op) .. "'", 2) end
  A.count_one()
  local backends = check.backends or ops.available_backends()
  local ref = run(inputs.logits:to("cpu"), {
    target = on("cpu", inputs.target), grad_output = on("cpu", inputs.grad_output),
  }, copy_opts(opts, "ref", "cpu"))
  for _, backend in ipairs(backends) do
    if backend ~= "ref" then
      local device = backend == "cuda" and "cuda" or "cpu"
      local x = inputs.logits:to(device)
      if opts and opts.inplace then x = x:clone() end
      local got = run(x, { target = on(device, inputs.target), grad_output = on(device, inputs.grad_output) },
        copy_opts(opts, backend, device))
      for name, expected in pairs(ref) do
        local actual = got[name]
        if actual == nil then error(string.format("backends_agree: %s returned no %s on %s", op, name, backend), 2) end
        local tol = tolerance(actual.dtype, check.tol)
        local ok, err = pcall(A.close, actual, expected, {
          rtol = tol.rtol, atol = tol.atol, equal_nan = true,
          msg = string.format("%s: backend %s disagrees with ref on %s", op, backend, name),
        })
        if not ok then error(err, 2) end
      end
    end
  end
  return true
end

return M

-- assert.backends_agree: runs one op on every available backend with the same
-- inputs and compares every output with the reference backend's.
local ops = require("gradspec.ops")
local A = require("gradspec.assert")
local backend = require("gradspec.backend")
local track = require("gradspec.track")
local capture = require("gradspec.html.capture")

local M = {}

-- What each op returns, as named outputs, for property checks.
local runners = {}
for op in pairs(ops.shape) do
  runners[op] = function(x, inp, opts)
    local o = ops.run(op, x, inp.target, inp.grad_output, opts, 2)
    o.backend = nil
    return o
  end
end
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

local check_keys = { backends = true, tol = true, reference = true }

-- Runs op on one backend; nil and the reason when it cannot take the call.
local function outputs_on(name, op, inputs, opts)
  local e = backend.get(name)
  local why = backend.unavailable_reason(e)
  if why then return nil, name .. ": " .. why end
  local x = inputs.logits:to(e.device)
  if opts and opts.inplace then x = x:clone() end
  -- untracked: this assertion consumes every output it makes itself
  local ok, out = pcall(track.untracked, ops.run, op, x, on(e.device, inputs.target), on(e.device, inputs.grad_output),
    copy_opts(opts, name, e.device), 1)
  if ok then return out end
  if backend.is_unsupported(out) then return nil, out.reason end
  error(out, 0)
end

-- inputs: {logits =, target =, grad_output =}; opts: the op's options;
-- check: {backends = {...}, tol = {rtol, atol}, reference = "ref"}
-- (defaults: every registered backend that can run here; per-dtype
-- tolerances). A backend that lacks something the call needs is skipped
-- with the reason; when none is left to compare, the `it` is skipped.
-- Counts as one assertion.
function M.backends_agree(op, inputs, opts, check)
  check = check or {}
  if not ops.shape[op] then error("backends_agree: unknown op '" .. tostring(op) .. "'", 2) end
  if type(inputs) ~= "table" or inputs.logits == nil then
    error("backends_agree: inputs must be a table {logits =, target =, grad_output =}", 2)
  end
  for k in pairs(check) do
    if not check_keys[k] then error("backends_agree: unknown check option '" .. tostring(k) .. "' (backends, tol, reference)", 2) end
  end
  local names = check.backends or backend.available(op)
  for _, name in ipairs(names) do
    if not backend.get(name) then
      error(string.format("backends_agree: backend %s is not registered (registered: %s)", tostring(name),
        table.concat(backend.names(), ", ")), 2)
    end
  end
  local ref_name = check.reference or "ref"
  local ref, why = outputs_on(ref_name, op, inputs, opts)
  if not ref then backend.unsupported("backends_agree(" .. op .. "): the reference cannot run: " .. why, 2) end
  ref.backend = nil
  local compared, skipped = 0, {}
  for _, name in ipairs(names) do
    if name ~= ref_name then
      local got, reason = outputs_on(name, op, inputs, opts)
      if not got then
        skipped[#skipped + 1] = reason
      else
        compared = compared + 1
        for out_name, expected in pairs(ref) do
          local actual = got[out_name]
          if actual == nil then
            -- only a Lua backend may leave out lse or z_loss
            skipped[#skipped + 1] = string.format("%s: returned no %s", name, out_name)
          else
            local tol = tolerance(actual.dtype, check.tol)
            -- for gradspec run --html: which op, backends and output, and each row's target
            local saved = capture.mode and capture.set_context({ target = inputs.target,
              label = string.format("%s: %s %s against %s", op, name, out_name, ref_name) })
            local ok, err = pcall(A.close, actual, expected, {
              rtol = tol.rtol, atol = tol.atol, equal_nan = true,
              msg = string.format("%s: backend %s disagrees with %s on %s", op, name, ref_name, out_name),
            })
            if capture.mode then capture.set_context(saved or nil) end
            if not ok then error(err, 2) end
          end
        end
      end
    end
  end
  if compared == 0 then
    backend.unsupported(string.format("backends_agree(%s): no backend to compare with %s%s", op, ref_name,
      #skipped > 0 and (": " .. table.concat(skipped, "; ")) or ""), 2)
  end
  for _, s in ipairs(skipped) do A.note("backends_agree(" .. op .. ") skipped " .. s) end
  A.count_one()
  return true
end

return M

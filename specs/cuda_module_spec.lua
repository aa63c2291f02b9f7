-- gs.cuda: CUDA C compiled with NVRTC, PTX/cubin/fatbin loaded through the
-- driver API, kernels declared and launched from Lua. The compile and
-- argument checks run anywhere NVRTC is installed (CI); what needs a GPU is
-- tagged cuda.
local cuda = gs.cuda or require("gradspec.cuda")
local process = require("gradspec.process")

local nvrtc_version, nvrtc_why = cuda.nvrtc_version()
local no_nvrtc = nvrtc_version == nil
local no_nvrtc_reason = "NVRTC is not available: " .. tostring(nvrtc_why)

local ADD = [[
extern "C" __global__ void add(float *a, const float *b, long long n) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) a[i] += b[i];
}
]]

-- A PTX kernel written by hand, so that loading and launching are tested
-- without NVRTC: fill(float *p, float value, unsigned n) sets p[0, n).
local FILL_PTX = [[
.version 7.0
.target sm_75
.address_size 64

.visible .entry fill(
	.param .u64 fill_p,
	.param .f32 fill_value,
	.param .u32 fill_n
)
{
	.reg .pred %in_range;
	.reg .b32 %i, %n, %block, %width;
	.reg .f32 %value;
	.reg .b64 %base, %offset, %address;

	ld.param.u64 %base, [fill_p];
	ld.param.f32 %value, [fill_value];
	ld.param.u32 %n, [fill_n];
	mov.u32 %block, %ctaid.x;
	mov.u32 %width, %ntid.x;
	mov.u32 %i, %tid.x;
	mad.lo.s32 %i, %block, %width, %i;
	setp.lt.u32 %in_range, %i, %n;
	@!%in_range bra DONE;
	cvta.to.global.u64 %base, %base;
	mul.wide.u32 %offset, %i, 4;
	add.s64 %address, %base, %offset;
	st.global.f32 [%address], %value;
DONE:
	ret;
}
]]

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

-- A fresh temporary directory; remove_dir deletes it and its files.
local function temp_dir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. process.quote(dir)) == 0)
  return dir
end
local function remove_dir(dir) os.execute("rm -rf " .. process.quote(dir)) end

-- Runs gradspec with these arguments and environment variables; returns its
-- output and exit status.
local function gradspec_with(env, args)
  local parts = {}
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. process.quote(v) end
  parts[#parts + 1] = process.quote(process.self_exe())
  for _, a in ipairs(args) do parts[#parts + 1] = process.quote(a) end
  return process.run(table.concat(parts, " "))
end

describe("gs.cuda.compile", function()
  skip_if(no_nvrtc, no_nvrtc_reason)

  it("compiles source text to PTX with an .entry for each extern \"C\" kernel", function()
    local mod = cuda.compile(ADD)
    assert.is_true(mod.ptx:find(".entry add(", 1, true) ~= nil, "no .entry add in:\n" .. mod.ptx)
    assert.equal(table.concat(mod:kernels(), ","), "add")
    assert.equal(mod.name, "kernel.cu")
    assert.equal(mod.arch, cuda.default_arch())
    if not cuda.device() then assert.equal(mod.arch, "compute_80") end
  end)

  it("compiles a file under its own name, its directory searched for #include", function()
    local dir = temp_dir()
    write_file(dir .. "/scale.cuh", "#define SCALE 3.0f\n")
    local path = write_file(dir .. "/scale.cu",
      '#include "scale.cuh"\nextern "C" __global__ void scale(float *x) { x[threadIdx.x] *= SCALE; }\n')
    local ok, mod = pcall(cuda.compile, path)
    remove_dir(dir)
    assert.is_true(ok, tostring(mod))
    assert.equal(mod.name, path)
    assert.is_true(mod.ptx:find(".entry scale(", 1, true) ~= nil)
  end)

  it("passes options (-D) and headers to NVRTC", function()
    local src = [[
#include "params.h"
#ifndef FACTOR
#error FACTOR is not set
#endif
extern "C" __global__ void times(float *x) { x[threadIdx.x] *= FACTOR * OFFSET; }
]]
    local headers = { ["params.h"] = "#define OFFSET 2.0f\n" }
    local mod = cuda.compile(src, { options = { "-DFACTOR=4.0f", "--use_fast_math" }, headers = headers })
    assert.is_true(mod.ptx:find(".entry times(", 1, true) ~= nil)
    assert.error(function() cuda.compile(src, { headers = headers }) end, "FACTOR is not set")
    assert.error(function() cuda.compile(src, { options = { "-DFACTOR=1" } }) end, "params.h")
  end)

  it("a compile error raises NVRTC's log with file:line", function()
    local src = 'extern "C" __global__ void broken(float *a) {\n  a[0] = 1;\n  a[1] = y;\n}\n'
    local msg = assert.error(function() cuda.compile(src, { name = "broken_kernel.cu" }) end,
      "broken_kernel.cu:3: error: identifier \"y\" is undefined")
    assert.is_true(msg:find("did not compile (NVRTC_ERROR_COMPILATION)", 1, true) ~= nil, msg)
    local dir = temp_dir()
    local path = write_file(dir .. "/broken.cu", src)
    local ok, err = pcall(cuda.compile, path)
    remove_dir(dir)
    assert.is_false(ok)
    assert.is_true(tostring(err):find(path .. ":3: error", 1, true) ~= nil, tostring(err))
  end)

  it("an option NVRTC does not know is an error with NVRTC's message", function()
    assert.error(function() cuda.compile(ADD, { options = { "--no-such-option" } }) end,
      "unrecognized option --no-such-option")
  end)

  it("bad arguments and options are errors naming them", function()
    assert.error(function() cuda.compile(42) end, "source_or_file must be a string")
    assert.error(function() cuda.compile(ADD, "opts") end, "opts must be a table")
    assert.error(function() cuda.compile(ADD, { optoins = {} }) end, "unknown option 'optoins'")
    assert.error(function() cuda.compile(ADD, { options = "-DX=1" }) end, "options must be a table of strings")
    assert.error(function() cuda.compile(ADD, { options = { "-DX=1", 2 } }) end, "options[2] must be a string")
    assert.error(function() cuda.compile(ADD, { options = { x = "-DX" } }) end, "options must be a list")
    assert.error(function() cuda.compile(ADD, { headers = { "a.h" } }) end, "is not a file name")
    assert.error(function() cuda.compile(ADD, { headers = { ["a.h"] = 1 } }) end, 'headers["a.h"] must be source text')
    assert.error(function() cuda.compile(ADD, { name = 3 }) end, "name must be a string")
    assert.error(function() cuda.compile(ADD, { arch = "hopper" }) end, "arch = \"hopper\" is not an architecture")
    assert.error(function() cuda.compile(ADD, { arch = "sm_90", options = { "-arch=sm_80" } }) end,
      "both set the architecture")
    assert.error(function() cuda.compile("kernels/no_such_kernel.cu") end,
      "cannot read kernels/no_such_kernel.cu: No such file or directory")
  end)

  it("an explicit architecture: compute_XX gives PTX only, sm_XX a cubin too", function()
    local ptx_only = cuda.compile(ADD, { arch = "compute_90" })
    assert.is_true(ptx_only.ptx:find(".target sm_90", 1, true) ~= nil)
    assert.equal(ptx_only.cubin, nil)
    local both = cuda.compile(ADD, { options = { "--gpu-architecture=sm_90" } })
    assert.equal(both.cubin:sub(1, 4), "\127ELF")
    assert.equal(both.arch, "sm_90")
  end)

  it("mod:save writes the PTX or the cubin", function()
    local mod = cuda.compile(ADD, { arch = "sm_90" })
    local dir = temp_dir()
    mod:save(dir .. "/add.ptx")
    mod:save(dir .. "/add.cubin")
    local ptx, cubin = read_file(dir .. "/add.ptx"), read_file(dir .. "/add.cubin")
    remove_dir(dir)
    assert.equal(ptx, mod.ptx)
    assert.equal(cubin, mod.cubin)
    local ptx_only = cuda.compile(ADD, { arch = "compute_80" })
    assert.error(function() ptx_only:save("/tmp/never.cubin") end, "has no cubin")
  end)
end)

describe("gs.cuda without NVRTC", function()
  it("compile is an error saying NVRTC cannot be loaded", function()
    local out, code = gradspec_with({ GRADSPEC_NVRTC = "/nonexistent/libnvrtc.so.13" },
      { "-e", "require('gradspec.cuda').compile('x;')" })
    assert.equal(code, 1, out)
    assert.is_true(out:find("gs.cuda.compile: GRADSPEC_NVRTC=/nonexistent/libnvrtc.so.13 cannot be loaded", 1, true) ~= nil, out)
  end)
end)

describe("kernel declarations and launch arguments", function()
  skip_if(no_nvrtc, no_nvrtc_reason)
  -- Every check here happens before the driver is asked for anything.
  local mod = not no_nvrtc and cuda.compile([[
extern "C" __global__ void args(float *a, const float *b, long long n, int k, unsigned u, float f, double d) {}
__global__ void mangled(float *a) {}
]]) or nil

  it("a name the module lacks is an error listing its kernels and the extern \"C\" rule", function()
    local msg = assert.error(function() mod:kernel("mangled", { "ptr" }) end, "no kernel named 'mangled'")
    assert.is_true(msg:find("_Z7mangledPf", 1, true) ~= nil, msg)
    assert.is_true(msg:find('extern "C"', 1, true) ~= nil, msg)
    assert.equal(mod:kernel("_Z7mangledPf", { "ptr" }).name, "_Z7mangledPf")
  end)

  it("the signature is checked: type names, count and sizes against the PTX", function()
    local sig = { "ptr", "ptr", "i64", "i32", "u32", "f32", "f64" }
    assert.equal(tostring(mod:kernel("args", sig)), "gs.cuda kernel args(ptr, ptr, i64, i32, u32, f32, f64)")
    assert.error(function() mod:kernel("args", { "ptr", "float*" }) end,
      'parameter 2 has type "float*"; the types are ptr, i32, u32, i64, u64, f32, f64')
    assert.error(function() mod:kernel("args", { "ptr", "ptr", "i64" }) end,
      "kernel args takes 7 parameters (in the PTX), the signature declares 3")
    assert.error(function() mod:kernel("args", { "ptr", "ptr", "i32", "i32", "u32", "f32", "f64" }) end,
      "parameter 3 is 8 bytes in the PTX but declared i32 (4 bytes)")
    assert.error(function() mod:kernel("args", "ptr, ptr") end, "the signature must be a list of parameter types")
    assert.error(function() mod:kernel(7, {}) end, "name must be a string")
  end)

  it("arguments are checked against the signature, naming the argument", function()
    local k = mod:kernel("args", { "ptr", "ptr", "i64", "i32", "u32", "f32", "f64" })
    local null = cuda.null
    local function launch(...) local a = { ... }; return function() k:launch(1, 32, nil, unpack(a, 1, 7)) end end
    assert.error(function() k:launch(1, 32, nil, null, null, 1) end, "kernel args takes 7 arguments (ptr, ptr, i64, i32, u32, f32, f64), got 3")
    assert.error(launch(gs.zeros({ 4 }), null, 1, 1, 1, 1, 1),
      "kernel args: argument 1 (ptr) is a tensor on cpu; it must be on cuda")
    assert.error(launch(null, 5, 1, 1, 1, 1, 1), "argument 2 (ptr) must be a cuda tensor, a device pointer (cdata) or gs.cuda.null, got 5")
    assert.error(launch(null, nil, 1, 1, 1, 1, 1), "argument 2 (ptr) must be a cuda tensor")
    assert.error(launch(null, null, 2.5, 1, 1, 1, 1), "kernel args: argument 3 (i64) = 2.5 is not an integer")
    assert.error(launch(null, null, 1, 2 ^ 31, 1, 1, 1), "argument 4 (i32) = 2147483648 is outside the range of i32")
    assert.error(launch(null, null, 1, 1, -1, 1, 1), "argument 5 (u32) = -1 is outside the range of u32")
    assert.error(launch(null, null, 2 ^ 63, 1, 1, 1, 1), "argument 3 (i64) = 9.2233720368547758e+18 is outside the range of i64")
    assert.error(launch(null, null, 1, 0 / 0, 1, 1, 1), "argument 4 (i32) = nan is not an integer")
    assert.error(launch(null, null, gs.zeros({ 1 }), 1, 1, 1, 1), "a tensor goes to a \"ptr\" parameter")
    assert.error(launch(null, null, 1, 1, 1, "1.5", 1), "argument 6 (f32) must be a number, got \"1.5\"")
    assert.error(launch(null, null, -1ULL, 1, 1, 1, 1), "argument 3 (i64) = 18446744073709551615ULL is outside the range of i64")
  end)

  it("grid, block and launch options are checked", function()
    local k = mod:kernel("args", { "ptr", "ptr", "i64", "i32", "u32", "f32", "f64" })
    local null = cuda.null
    assert.error(function() k:launch(0, 32, nil, null, null, 1, 1, 1, 1, 1) end, "grid = 0 is not a positive integer below 2^32")
    assert.error(function() k:launch({ 1, 1.5 }, 32, nil, null, null, 1, 1, 1, 1, 1) end, "grid[2] = 1.5 is not a positive integer")
    assert.error(function() k:launch(1, { 1, 1, 1, 1 }, nil, null, null, 1, 1, 1, 1, 1) end, "block must be a number or {x, y, z}")
    assert.error(function() k:launch(1, 32, { shared = 4 }, null, null, 1, 1, 1, 1, 1) end, "unknown option 'shared' (known: smem, stream, sync)")
    assert.error(function() k:launch(1, 32, { smem = -1 }, null, null, 1, 1, 1, 1, 1) end, "smem = -1 is not a byte count")
    assert.error(function() k:launch(1, 32, { sync = 1 }, null, null, 1, 1, 1, 1, 1) end, "sync must be true or false")
    assert.error(function() k:launch(1, 32, { stream = 3 }, null, null, 1, 1, 1, 1, 1) end, "stream must be a CUstream")
  end)
end)

describe("gs.cuda.load_module", function()
  it("a missing file, an empty one, garbage and a non-CUDA ELF are errors naming the file and the reason", function()
    assert.error(function() cuda.load_module("/nonexistent/kernels.ptx") end,
      "gs.cuda.load_module: cannot read /nonexistent/kernels.ptx: No such file or directory")
    local dir = temp_dir()
    local empty = write_file(dir .. "/empty.cubin", "")
    local garbage = write_file(dir .. "/garbage.ptx", "\0\1\2 not a kernel")
    local errs = {}
    for _, path in ipairs({ empty, garbage, process.self_exe() }) do
      local ok, e = pcall(cuda.load_module, path)
      errs[#errs + 1] = ok and "no error" or tostring(e)
    end
    remove_dir(dir)
    assert.is_true(errs[1]:find(empty .. ": it is empty", 1, true) ~= nil, errs[1])
    assert.is_true(errs[2]:find(garbage .. ": it is not PTX, a cubin or a fatbin (it begins \"\\x00\\x01\\x02 not a kernel\")", 1, true) ~= nil, errs[2])
    assert.is_true(errs[3]:find("it is an ELF file for another machine, not a cubin", 1, true) ~= nil, errs[3])
    assert.error(function() cuda.load_module(7) end, "path must be a string")
    assert.error(function() cuda.module_from_ptx("int main() {}", "c.txt") end, "c.txt is not PTX text")
  end)
end)

describe("gs.cuda without a CUDA device", function()
  skip_if(cuda.device() ~= nil, "a CUDA device is present")

  it("loading, launching and synchronizing say there is no CUDA device", function()
    local dir = temp_dir()
    local path = write_file(dir .. "/fill.ptx", FILL_PTX)
    -- a cubin and a fatbin are recognised by their headers before the driver is asked
    local cubin = write_file(dir .. "/fake.cubin", "\127ELF" .. string.rep("\0", 14) .. "\190\0" .. string.rep("\0", 44))
    local fatbin = write_file(dir .. "/fake.fatbin", "\80\237\85\186" .. string.rep("\0", 60))
    local errs = {}
    for _, p in ipairs({ path, cubin, fatbin }) do
      local ok, e = pcall(cuda.load_module, p)
      errs[#errs + 1] = ok and "no error" or tostring(e)
    end
    remove_dir(dir)
    assert.is_true(errs[1]:find("gs.cuda.load_module: " .. path .. ": no CUDA device", 1, true) ~= nil, errs[1])
    assert.is_true(errs[2]:find("no CUDA device", 1, true) ~= nil, errs[2])
    assert.is_true(errs[3]:find("no CUDA device", 1, true) ~= nil, errs[3])
    assert.error(function() cuda.module_from_ptx(FILL_PTX) end, "no CUDA device")
    assert.error(function() cuda.synchronize() end, "no CUDA device")
    if not no_nvrtc then
      local k = cuda.compile(ADD):kernel("add", { "ptr", "ptr", "i64" })
      assert.error(function() k:launch(1, 32, nil, cuda.null, cuda.null, 0) end, "kernel add (module kernel.cu): no CUDA device")
    end
  end)
end)

-- On the GPU ------------------------------------------------------------------

describe("gs.cuda on the GPU", { tags = "cuda" }, function()
  it("a compiled kernel adds two tensors", function()
    skip_if(no_nvrtc, no_nvrtc_reason)
    local add = cuda.compile(ADD):kernel("add", { "ptr", "ptr", "i64" })
    local a, b = gs.randn({ 1000 }, { seed = 1 }), gs.randn({ 1000 }, { seed = 2 })
    local da, db = a:to("cuda"), b:to("cuda")
    add:launch(math.ceil(1000 / 256), 256, nil, da, db, 1000)
    assert.close(da, a:add(b))
    -- a view passes the address of its first element: row 1 alone changes
    local x = gs.zeros({ 3, 8 }, { device = "cuda" })
    add:launch(1, 32, { sync = true }, x:row(1), gs.arange(8, { device = "cuda" }), 8)
    assert.close(x, gs.tensor({ { 0, 0, 0, 0, 0, 0, 0, 0 }, { 0, 1, 2, 3, 4, 5, 6, 7 }, { 0, 0, 0, 0, 0, 0, 0, 0 } }))
  end)

  it("every parameter type reaches the kernel with its value", function()
    skip_if(no_nvrtc, no_nvrtc_reason)
    local k = cuda.compile([[
extern "C" __global__ void echo(double *out, int a, unsigned b, long long c, unsigned long long d, float e, double f) {
  out[0] = a; out[1] = b; out[2] = (double)c; out[3] = (double)d; out[4] = e; out[5] = f;
}
]]):kernel("echo", { "ptr", "i32", "u32", "i64", "u64", "f32", "f64" })
    local out = gs.zeros({ 6 }, { dtype = "f64", device = "cuda" })
    k:launch(1, 1, nil, out, -2 ^ 31, 2 ^ 32 - 1, -2 ^ 52 - 3, 2 ^ 53, 0.25, 1 / 3)
    assert.close(out, gs.tensor({ -2 ^ 31, 2 ^ 32 - 1, -2 ^ 52 - 3, 2 ^ 53, 0.25, 1 / 3 }, { dtype = "f64" }), { rtol = 0, atol = 0 })
    k:launch(1, 1, nil, out, 7, 8, -5LL, 9ULL, 1, 2)
    assert.close(out, gs.tensor({ 7, 8, -5, 9, 1, 2 }, { dtype = "f64" }), { rtol = 0, atol = 0 })
  end)

  it("grid and block as {x, y, z}, and dynamic shared memory above 48 KiB", function()
    skip_if(no_nvrtc, no_nvrtc_reason)
    local mod = cuda.compile([[
extern "C" __global__ void dims(float *out) {
  if (blockIdx.x + blockIdx.y + blockIdx.z + threadIdx.x + threadIdx.y + threadIdx.z == 0) {
    out[0] = gridDim.x; out[1] = gridDim.y; out[2] = gridDim.z;
    out[3] = blockDim.x; out[4] = blockDim.y; out[5] = blockDim.z;
  }
}
extern "C" __global__ void shared_sum(float *out, int n) {
  extern __shared__ float s[];
  for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = 1.0f;
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0;
    for (int i = 0; i < n; i++) sum += s[i];
    out[0] = sum;
  }
}
]])
    local out = gs.zeros({ 6 }, { device = "cuda" })
    mod:kernel("dims", { "ptr" }):launch({ 3, 2, 2 }, { 4, 2 }, nil, out)
    assert.close(out, gs.tensor({ 3, 2, 2, 4, 2, 1 }))
    local n = 20000 -- 80000 bytes of shared memory
    local sum = gs.zeros({ 1 }, { device = "cuda" })
    mod:kernel("shared_sum", { "ptr", "i32" }):launch(1, 256, { smem = n * 4 }, sum, n)
    assert.close(sum, n)
  end)

  it("PTX written by hand, and saved PTX and cubin, load and run", function()
    local out = gs.full({ 100 }, -1, { device = "cuda" })
    cuda.module_from_ptx(FILL_PTX, "fill.ptx"):kernel("fill", { "ptr", "f32", "u32" }):launch(1, 128, nil, out, 2.5, 90)
    local expected = {}
    for i = 1, 100 do expected[i] = i <= 90 and 2.5 or -1 end
    assert.close(out, gs.tensor(expected))
    if no_nvrtc then return end
    local mod = cuda.compile(ADD, { arch = cuda.device().arch })
    local dir = temp_dir()
    local ok, err = pcall(function()
      for _, file in ipairs({ mod:save(dir .. "/add.ptx"), mod:save(dir .. "/add.cubin") }) do
        local loaded = cuda.load_module(file)
        local a = gs.ones({ 10 }, { device = "cuda" })
        loaded:kernel("add", { "ptr", "ptr", "i64" }):launch(1, 32, nil, a, a, 10)
        assert.close(a, 2)
      end
    end)
    remove_dir(dir)
    assert.is_true(ok, tostring(err))
  end)

  -- CUDA calls that fail on purpose run in a child gradspec: an error that
  -- loses the context costs only the child, and compute-sanitizer, which
  -- follows the application process alone (scripts/gpu_run.sh), sees no
  -- failing API call that is meant to fail.
  it("a PTX error from the driver's JIT carries the JIT log", function()
    local bad = FILL_PTX:gsub("%[%%address%]", "[%%nowhere]")
    local out, code = process.gradspec({ "-e", "local bad = " .. string.format("%q", bad) .. [[

print(select(2, pcall(require("gradspec.cuda").module_from_ptx, bad, "bad.ptx")))
]] })
    assert.equal(code, 0, out)
    assert.is_true(out:find("gs.cuda.module_from_ptx: bad.ptx: cuModuleLoadDataEx: CUDA_ERROR_INVALID_PTX", 1, true) ~= nil, out)
    assert.is_true(out:find("JIT log:", 1, true) ~= nil and out:find("nowhere", 1, true) ~= nil, out)
  end)

  it("a kernel the module lacks is an error naming it, with a cubin as with PTX", function()
    skip_if(no_nvrtc, no_nvrtc_reason)
    local mod = cuda.compile(ADD, { arch = cuda.device().arch })
    assert.error(function() mod:kernel("sub", { "ptr" }) end, "has no kernel named 'sub'; its kernels: add")
    local dir = temp_dir()
    local path = mod:save(dir .. "/add.cubin")
    local out, code = process.gradspec({ "-e", string.format([[
local loaded = require("gradspec.cuda").load_module(%q)
print(select(2, pcall(loaded.kernel, loaded, "sub", { "ptr" })))
]], path) })
    remove_dir(dir)
    assert.equal(code, 0, out)
    assert.is_true(out:find("module " .. path .. " has no kernel named 'sub'", 1, true) ~= nil, out)
  end)

  it("wrong argument types are errors naming the argument; a refused launch names its configuration", function()
    skip_if(no_nvrtc, no_nvrtc_reason)
    local add = cuda.compile(ADD):kernel("add", { "ptr", "ptr", "i64" })
    local a = gs.zeros({ 4 }, { device = "cuda" })
    assert.error(function() add:launch(1, 32, nil, a, gs.zeros({ 4 }), 4) end, "argument 2 (ptr) is a tensor on cpu; it must be on cuda")
    assert.error(function() add:launch(1, 32, nil, a, a, 4.5) end, "argument 3 (i64) = 4.5 is not an integer")
    assert.error(function() add:launch(1, 32, nil, a, a) end, "takes 3 arguments")
    local out, code = process.gradspec({ "-e", "local add = require('gradspec.cuda').compile(" .. string.format("%q", ADD)
      .. [[):kernel("add", { "ptr", "ptr", "i64" })
local a = gs.ones({ 4 }, { device = "cuda" })
print(select(2, pcall(add.launch, add, 1, 4096, nil, a, a, 4)))
add:launch(1, 32, nil, a, a, 4) -- the context survives a refused launch
print("after: " .. table.concat(a:totable(), " "))
]] })
    assert.equal(code, 0, out)
    assert.is_true(out:find("kernel add (grid {1, 1, 1}, block {4096, 1, 1}, smem 0; it takes at most ", 1, true) ~= nil, out)
    assert.is_true(out:find("CUDA_ERROR_INVALID_VALUE", 1, true) ~= nil, out)
    assert.is_true(out:find("after: 2 2 2 2", 1, true) ~= nil, out)
  end)

  it("sync = false returns at once; gs.cuda.synchronize waits", function()
    skip_if(no_nvrtc, no_nvrtc_reason)
    local add = cuda.compile(ADD):kernel("add", { "ptr", "ptr", "i64" })
    local a, b = gs.zeros({ 4096 }, { device = "cuda" }), gs.ones({ 4096 }, { device = "cuda" })
    for _ = 1, 5 do add:launch(16, 256, { sync = false }, a, b, 4096) end
    cuda.synchronize()
    assert.close(a, 5)
  end)

  it("an illegal address is a Lua error naming the kernel; the context is reported lost", function()
    skip_if(no_nvrtc, no_nvrtc_reason)
    local script = [[
local cuda = require("gradspec.cuda")
local poke = cuda.compile('extern "C" __global__ void poke(float *p) { p[threadIdx.x] = 1.0f; }'):kernel("poke", { "ptr" })
print("first: " .. select(2, pcall(poke.launch, poke, 1, 32, nil, cuda.null)))
print("again: " .. select(2, pcall(poke.launch, poke, 1, 32, nil, cuda.null)))
print("lost: " .. tostring(cuda.context_lost()))
]]
    local out, code = process.gradspec({ "-e", script })
    assert.equal(code, 0, out)
    assert.is_true(out:find("first: [^\n]*kernel poke: CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered; "
      .. "the CUDA context is lost; the rest of this spec file cannot use the GPU") ~= nil, out)
    assert.is_true(out:find("again: [^\n]*kernel poke: the CUDA context was lost to an earlier error %(CUDA_ERROR_ILLEGAL_ADDRESS") ~= nil, out)
    assert.is_true(out:find("lost: true", 1, true) ~= nil, out)
  end)
end)

-- CUDA is loaded on first use, never at start-up: a start maps no CUDA
-- library, cuBLAS is opened with dlopen by the first call that needs it
-- (GRADSPEC_CUBLAS names the file instead), and a machine without cuBLAS or
-- a GPU runs every CPU spec. bench/workbench.lua measures what this saves.
local ffi = require("ffi")
local C = require("gradspec.ffi").C
local process = require("gradspec.process")

local function has(out, text) return out:find(text, 1, true) ~= nil end

-- Lua that prints the CUDA libraries this process has mapped, one a line.
local LIST_MAPS = [[
for l in io.lines("/proc/self/maps") do
  local lib = l:match("/(lib[%w_]*cu[%w_]*%.so[%.%d]*)") or l:match("/(libnvrtc[%w_]*%.so[%.%d]*)")
  if lib then print("mapped " .. lib) end
end
]]

-- Lua that loads cuBLAS now and prints how that went.
local LOAD_BLAS = [[
local ffi = require("ffi")
local C = require("gradspec.ffi").C
local err, path = ffi.new("gs_error"), ffi.new("char[512]")
for i = 1, 2 do
  local ok = C.gs_cuda_blas_load(path, 512, err)
  print(string.format("load %d: %d [%s] [%s]", i, ok, ffi.string(path), ffi.string(err.msg)))
end
]]

-- gradspec -e CODE with environment variables set ("NAME=value" words).
local function gradspec_e(env, code)
  return process.run(env .. " " .. process.quote(process.self_exe()) .. " -e " .. process.quote(code))
end

local cuda_built = C.gs_cuda_built() ~= 0

describe("lazy CUDA", function()
  it("a start maps no CUDA library", function()
    local out, code = gradspec_e("", LIST_MAPS)
    assert.equal(code, 0, out)
    assert.equal(out, "", "a start mapped CUDA libraries")
  end)

  it("CPU work maps no CUDA library either", function()
    local out, code = gradspec_e("", [[
local x = gs.randn({ 8, 300 })
local t = gs.randint(0, 300, { 8 })
local loss, aux = gs.cross_entropy(x, t, { grad = true })
local h, W = gs.randn({ 6, 16 }), gs.randn({ 40, 16 })
gs.linear_cross_entropy(h, W, gs.randint(0, 40, { 6 }))
]] .. LIST_MAPS)
    assert.equal(code, 0, out)
    assert.equal(out, "", "CPU ops mapped CUDA libraries")
  end)

  it("the gradspec binary needs no CUDA shared library to start", function()
    local out, code = process.run("ldd " .. process.quote(process.self_exe()))
    skip_if(code == 127, "ldd is not installed")
    assert.equal(code, 0, out)
    for _, lib in ipairs({ "libcublas", "libcublasLt", "libcudart", "libcuda.so", "libnvrtc" }) do
      assert.is_false(has(out, lib), "gradspec links " .. lib .. ":\n" .. out)
    end
  end)

  it("cuBLAS is found where it is installed and mapped only once loaded", function()
    local out, code = gradspec_e("", LIST_MAPS .. 'print("--")\n' .. LOAD_BLAS .. LIST_MAPS)
    assert.equal(code, 0, out)
    local before, after = out:match("^(.-)%-%-\n(.*)$")
    assert.equal(before, "", "mapped before loading:\n" .. out)
    if not cuda_built then
      assert.is_true(has(after, "load 1: 0 [] [this gradspec was built without CUDA"), out)
      return
    end
    local ok = after:match("load 1: (%d)")
    if ok == "1" then
      assert.is_true(after:match("load 1: 1 %[[^%]]*libcublas%.so[%.%d]*%] %[%]") ~= nil, out)
      assert.is_true(has(after, "load 2: 1 ["), out)
      assert.is_true(has(after, "mapped libcublas.so"), out)
      assert.is_true(has(after, "mapped libcublasLt.so"), out)
    else
      -- a machine without cuBLAS: the error says what was looked for, where
      assert.is_true(has(after, "load 1: 0 [] [cuBLAS not found: no libcublas.so.13, .so.12 or .so on the library path"), out)
    end
  end)

  it("GRADSPEC_CUBLAS naming a missing file: the error names it, and the failure is remembered", function()
    local out, code = gradspec_e("GRADSPEC_CUBLAS=/nonexistent/libcublas.so.13", LOAD_BLAS .. LIST_MAPS)
    assert.equal(code, 0, out)
    if not cuda_built then
      assert.is_true(has(out, "built without CUDA"), out)
      return
    end
    local want = "0 [] [cannot load cuBLAS from GRADSPEC_CUBLAS=/nonexistent/libcublas.so.13: "
      .. "/nonexistent/libcublas.so.13: cannot open shared object file"
    assert.is_true(has(out, "load 1: " .. want), out)
    assert.is_true(has(out, "load 2: " .. want), out)
    assert.is_false(has(out, "mapped"), out)
  end)

  it("GRADSPEC_CUBLAS naming a library that is not cuBLAS: the error names the missing function", function()
    skip_if(not cuda_built, "gradspec was built without CUDA")
    local out, code = gradspec_e("GRADSPEC_CUBLAS=libm.so.6", LOAD_BLAS)
    assert.equal(code, 0, out)
    assert.is_true(out:match("load 1: 0 %[%] %[[^%]]*libm%.so%.6 lacks cublasCreate_v2 %(cuBLAS 11%.4 or later is needed%)%]") ~= nil, out)
  end)

  it("without cuBLAS, CPU specs pass and cuda specs run on a GPU or are skipped with the reason", function()
    local out, code = process.run("GRADSPEC_CUBLAS=/nonexistent " .. process.quote(process.self_exe())
      .. " run -v specs/fixtures/lazy_cuda/cpu_and_cuda.lua")
    assert.equal(code, 0, out)
    assert.is_true(has(out, "PASS  without cuBLAS a CPU cross entropy runs"), out)
    if gs.cuda_available() then
      assert.is_true(has(out, "PASS  without cuBLAS a cuda tensor round-trips #cuda"), out)
    else
      assert.is_true(has(out, "SKIP  without cuBLAS a cuda tensor round-trips #cuda (needs a CUDA device: "), out)
    end
  end)

  it("a GPU linear cross entropy loads cuBLAS on first use #cuda", function()
    local out, code = gradspec_e("", LIST_MAPS .. [[
print("--")
local h, W = gs.randn({ 6, 16 }):to("cuda"), gs.randn({ 40, 16 }):to("cuda")
local loss = gs.linear_cross_entropy(h, W, gs.randint(0, 40, { 6 }):to("cuda"))
print("loss " .. loss:to("cpu"):item())
]] .. LIST_MAPS)
    assert.equal(code, 0, out)
    local before, after = out:match("^(.-)%-%-\n(.*)$")
    assert.equal(before, "", out)
    assert.is_true(after:match("loss %d") ~= nil, out)
    assert.is_true(has(after, "mapped libcublas.so"), out)
  end)

  it("a GPU linear cross entropy without cuBLAS fails naming the library #cuda", function()
    local out, code = gradspec_e("GRADSPEC_CUBLAS=/nonexistent", [[
local h, W = gs.randn({ 6, 16 }):to("cuda"), gs.randn({ 40, 16 }):to("cuda")
local ok, err = pcall(gs.linear_cross_entropy, h, W, gs.randint(0, 40, { 6 }):to("cuda"))
print(ok, err)
]])
    assert.equal(code, 0, out)
    assert.is_true(has(out, "false"), out)
    assert.is_true(has(out, "cannot load cuBLAS from GRADSPEC_CUBLAS=/nonexistent"), out)
  end)
end)

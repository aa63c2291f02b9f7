-- Bringing CUDA kernels into gradspec at run time: gs.cuda.
--
--   local mod = gs.cuda.compile("my_kernels.cu", { options = { "-DBLOCK=256" } })
--   local add = mod:kernel("add", { "ptr", "ptr", "i64" })
--   add:launch(math.ceil(n / 256), 256, nil, a, b, n)
--
-- compile() runs NVRTC (CUDA C to PTX, plus a cubin for the GPU when one is
-- present); load_module() takes what nvcc or Triton's compiler wrote (PTX, a
-- cubin or a fatbin); module_from_ptx() takes PTX text. Kernels are launched
-- through the CUDA driver API. NVRTC and the driver are opened when first
-- needed: gradspec starts without them, and a call that needs one says what
-- is missing.
--
-- The raw interface a kernel sees:
-- * A tensor passed where the kernel declares "ptr" becomes t:data(): the
--   address of its first element (its view offset included) in device
--   memory. The tensor must be on "cuda". Nothing else is passed: the kernel
--   gets no shape, dtype or stride, so pass them as arguments yourself.
-- * Layout: element (i, j) of a 2-D tensor is at data + i * t.stride + j,
--   the stride counted in elements (not bytes) and >= t.cols; a 1-D tensor
--   is one contiguous row of t.cols elements; t.dtype says what an element
--   is (f32 is float, bf16 and f16 are 16-bit, i64 is long long, ...).
--   t:contiguous() gives a copy with stride == cols where a kernel needs one.
-- * Memory: cuda tensors come from cudaMalloc, in the CUDA runtime's primary
--   context of device 0. Kernels run in that same context (its primary
--   context retained through the driver API and made current), so tensor
--   pointers are valid in them, and the legacy default stream orders a
--   launch with gradspec's own copies and kernels.
-- * Synchronisation: launch() waits for the kernel (cuCtxSynchronize) and
--   turns a launch or execution error into a Lua error naming the kernel.
--   With { sync = false } it returns at once: the tensors passed stay
--   referenced until gs.cuda.synchronize(), which reports any error.
-- * A kernel that touches memory it should not (an illegal address, a
--   device-side assert) leaves the context unusable until the process
--   exits; the error says so. Each spec file runs in its own process, so
--   the next file starts clean.
-- * A kernel's name is its symbol: declare kernels extern "C" or pass the
--   mangled C++ name (_Z3addPfS_x).
local gffi = require("gradspec.ffi")
local T = require("gradspec.tensor")
local ffi, C = gffi.ffi, gffi.C

local M = {}

-- A NULL device pointer, for a "ptr" parameter that takes none.
M.null = ffi.cast("void *", nil)

local ST_OK, ST_ARG = 0, 2 -- gs_status: GS_OK, GS_ERR_ARG
local LOST = "the CUDA context is lost; the rest of this spec file cannot use the GPU"

local err = ffi.new("gs_error")

local function fail(level, fmt, ...) error(string.format(fmt, ...), level + 1) end
local function err_text() return ffi.string(err.msg) end

-- Text for a value in a message: strings quoted, tensors by shape and device.
local function show(x)
  if type(x) == "string" then return string.format("%q", x) end
  if T.is_tensor(x) then return string.format("a %s tensor on %s", T.shape_string(x), x.device) end
  return tostring(x)
end

-- Checks that opts is nil or a table whose keys are all in `allowed`.
local function check_opts(fname, opts, allowed, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(level + 1, "%s: opts must be a table, got %s", fname, type(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      fail(level + 1, "%s: unknown option '%s' (known: %s)", fname, tostring(k), table.concat(names, ", "))
    end
  end
  return opts
end

local function read_file(path)
  local f, why = io.open(path, "rb")
  if not f then return nil, why end
  local data = f:read("*a")
  f:close()
  return data
end

-- NVRTC and the device -------------------------------------------------------

-- "13.0", or nil and why NVRTC cannot be used.
function M.nvrtc_version()
  local v = ffi.new("int[2]")
  if C.gs_cu_nvrtc_version(v, v + 1, err) ~= ST_OK then return nil, err_text() end
  return string.format("%d.%d", v[0], v[1])
end

-- Device 0 through the driver: { major, minor, arch = "sm_90" }, or nil and
-- why there is none.
local device_info, device_why
function M.device()
  if device_info == nil and device_why == nil then
    local cc = ffi.new("int[2]")
    if C.gs_cu_device(cc, cc + 1, err) == ST_OK then
      device_info = { major = cc[0], minor = cc[1], arch = string.format("sm_%d%d", cc[0], cc[1]) }
    else
      device_why = err_text()
    end
  end
  return device_info, device_why
end

-- The real architectures NVRTC compiles for, ascending: { 75, 80, ... }.
local function nvrtc_archs()
  local buf = ffi.new("int[64]")
  local n = math.min(C.gs_cu_nvrtc_archs(buf, 64), 64)
  local out = {}
  for i = 0, n - 1 do out[#out + 1] = buf[i] end
  table.sort(out)
  return out
end

-- The architecture compile() uses when none is given: the device's own
-- (sm_XY, a cubin), the newest PTX NVRTC knows for a device newer than it
-- (the driver compiles PTX forward), compute_80 PTX without a device.
function M.default_arch()
  local dev = M.device()
  if not dev then return "compute_80" end
  local cc, archs = dev.major * 10 + dev.minor, nvrtc_archs()
  if #archs == 0 then return "sm_" .. cc end
  for _, a in ipairs(archs) do
    if a == cc then return "sm_" .. cc end
  end
  if cc > archs[#archs] then return "compute_" .. archs[#archs] end
  error(string.format("gs.cuda: the GPU is sm_%d, which this NVRTC cannot compile for (it knows sm_%d to sm_%d)",
    cc, archs[1], archs[#archs]), 3)
end

-- The toolkit's include directory (for <cuda_fp16.h> and friends): beside
-- the NVRTC library, else $CUDA_HOME, else /usr/local/cuda; nil if none.
local toolkit_include
local function find_toolkit_include()
  if toolkit_include ~= nil then return toolkit_include or nil end
  toolkit_include = false
  local dirs = {}
  -- .../lib64/libnvrtc.so.13 -> .../include
  local prefix = ffi.string(C.gs_cu_nvrtc_path()):match("^(.*)/[^/]+/[^/]+$")
  if prefix then dirs[#dirs + 1] = prefix .. "/include" end
  local home = os.getenv("CUDA_HOME")
  if home and home ~= "" then dirs[#dirs + 1] = home .. "/include" end
  dirs[#dirs + 1] = "/usr/local/cuda/include"
  for _, d in ipairs(dirs) do
    local f = io.open(d .. "/cuda_fp16.h", "rb")
    if f then
      f:close()
      toolkit_include = d
      break
    end
  end
  return toolkit_include or nil
end

-- Modules -------------------------------------------------------------------

local Module = {}
Module.__index = Module
local Kernel = {}
Kernel.__index = Kernel
M.Module, M.Kernel = Module, Kernel

-- Parameters of each .entry in PTX text: name -> list of sizes in bytes.
local function ptx_entries(ptx)
  local out, order = {}, {}
  for name, params in ptx:gmatch("%.entry%s+([%w_$]+)%s*(%b())") do
    local sizes = {}
    for decl in params:sub(2, -2):gmatch("[^,]+") do
      if decl:find("%.param") then
        local bits = decl:match("%.[usbf](%d+)")
        local count = decl:match("%[(%d+)%]")
        sizes[#sizes + 1] = (tonumber(bits) or 64) / 8 * (tonumber(count) or 1)
      end
    end
    out[name] = sizes
    order[#order + 1] = name
  end
  return out, order
end

-- "ptx", "cubin" or "fatbin", or nil and what is wrong with the bytes.
local function image_kind(data)
  if #data == 0 then return nil, "it is empty" end
  local magic = data:sub(1, 4)
  -- A cubin is an ELF file whose machine (e_machine, bytes 19-20) is
  -- EM_CUDA, 190.
  if magic == "\127ELF" then
    if data:byte(19) == 190 and data:byte(20) == 0 then return "cubin" end
    return nil, "it is an ELF file for another machine, not a cubin"
  end
  if magic == "\80\237\85\186" then return "fatbin" end
  if not data:find("%z") and data:find("%.version%s+%d") and data:find("%.target%s+[%w_]") then return "ptx" end
  local head = data:sub(1, 24):gsub("[^%w%p ]", function(c) return string.format("\\x%02x", c:byte()) end)
  return nil, string.format("it is not PTX, a cubin or a fatbin (it begins \"%s\")", head)
end

local function new_module(name, fields)
  fields.name = name
  if fields.ptx then fields._entries, fields._entry_order = ptx_entries(fields.ptx) end
  return setmetatable(fields, Module)
end

-- Loads the module into the driver, once. Lazy for compile()'s modules so
-- that compiling works where there is no GPU. prefix: what its errors start
-- with (default "gs.cuda: NAME").
function Module:load(level, prefix)
  if self._handle then return self end
  level = (level or 1) + 1
  local image = self.cubin or self.image or self.ptx
  local log = ffi.new("char[?]", 16384)
  local out = ffi.new("gs_cu_module *[1]")
  local st = C.gs_cu_module_load(image, out, log, 16384, err)
  if st ~= ST_OK then
    local msg = string.format("%s: %s", prefix or ("gs.cuda: " .. self.name), err_text())
    local jit_log = ffi.string(log)
    if jit_log ~= "" then msg = msg .. "\nJIT log:\n" .. jit_log end
    if C.gs_cu_context_lost() ~= 0 then msg = msg .. "\n" .. LOST end
    error(msg, level)
  end
  self._handle = ffi.gc(out[0], C.gs_cu_module_unload)
  return self
end

-- The kernel names of the module: from its PTX, else from the driver (CUDA
-- 12.4 and later); nil when neither can tell.
function Module:kernels()
  if self._entry_order then return { unpack(self._entry_order) } end
  if not self._handle then return nil end
  local buf = ffi.new("char[4096]")
  if C.gs_cu_module_function_names(self._handle, buf, 4096) < 0 then return nil end
  local out = {}
  for name in ffi.string(buf):gmatch("[^, ]+") do out[#out + 1] = name end
  return out
end

-- Writes the PTX (a path ending in .ptx) or the cubin (.cubin).
function Module:save(path)
  if type(path) ~= "string" then fail(2, "save: path must be a string, got %s", type(path)) end
  local what = path:match("%.cubin$") and "cubin" or "ptx"
  local data = self[what]
  if not data then fail(2, "save: module %s has no %s to write to %s", self.name, what, path) end
  local f, why = io.open(path, "wb")
  if not f then fail(2, "save: cannot write %s: %s", path, why) end
  f:write(data)
  f:close()
  return path
end

Module.__tostring = function(m)
  local names = m:kernels()
  return string.format("gs.cuda module %s (%s)", m.name, names and table.concat(names, ", ") or "kernels not listed")
end

local compile_opts = { name = true, options = true, headers = true, arch = true }

local function is_arch_option(o) return o:find("^%-%-?gpu%-architecture") or o:find("^%-arch") end

-- source_or_file: a path (a string with none of newline { } ; ( ) that must
-- then exist), else CUDA C source text. opts: name (in messages and NVRTC's
-- log; default the path, or "kernel.cu"), options (NVRTC options: -D, -I,
-- --use_fast_math, ...), headers ({ ["name.h"] = "source" }), arch
-- ("sm_90", "compute_80"; default M.default_arch()). A file's directory and
-- the toolkit's include directory are searched for #include.
function M.compile(source_or_file, opts)
  local fname = "gs.cuda.compile"
  opts = check_opts(fname, opts, compile_opts, 2)
  if type(source_or_file) ~= "string" then
    fail(2, "%s: source_or_file must be a string (a path or CUDA source), got %s", fname, type(source_or_file))
  end
  if opts.name ~= nil and type(opts.name) ~= "string" then
    fail(2, "%s: name must be a string, got %s", fname, type(opts.name))
  end
  local source, name, dir = source_or_file, opts.name, nil
  if not source_or_file:find("[\n{};()]") then
    local data, why = read_file(source_or_file)
    if not data then fail(2, "%s: cannot read %s (a string without newline, braces, ';' or parentheses is taken as a path)", fname, why) end
    source, name = data, name or source_or_file
    dir = source_or_file:match("^(.*)/[^/]*$") or "."
  end
  name = name or "kernel.cu"

  local options = {}
  if opts.options ~= nil then
    if type(opts.options) ~= "table" then
      fail(2, "%s: options must be a table of strings, got %s", fname, show(opts.options))
    end
    for k in pairs(opts.options) do
      if type(k) ~= "number" or k < 1 or k > #opts.options or k ~= math.floor(k) then
        fail(2, "%s: options must be a list of strings, but has the key %s", fname, show(k))
      end
    end
    for i, o in ipairs(opts.options) do
      if type(o) ~= "string" then fail(2, "%s: options[%d] must be a string, got %s", fname, i, show(o)) end
      options[i] = o
    end
  end
  local names, texts = {}, {}
  if opts.headers ~= nil then
    if type(opts.headers) ~= "table" then
      fail(2, "%s: headers must be a table { [\"name.h\"] = source }, got %s", fname, show(opts.headers))
    end
    for k, v in pairs(opts.headers) do
      if type(k) ~= "string" then fail(2, "%s: headers: the key %s is not a file name", fname, show(k)) end
      if type(v) ~= "string" then fail(2, "%s: headers[%q] must be source text, got %s", fname, k, show(v)) end
      names[#names + 1] = k
    end
    table.sort(names)
    for i, k in ipairs(names) do texts[i] = opts.headers[k] end
  end

  local version, why = M.nvrtc_version()
  if not version then fail(2, "%s: %s", fname, why) end

  local arch = opts.arch
  local user_arch
  for _, o in ipairs(options) do
    if is_arch_option(o) then user_arch = o end
  end
  if arch ~= nil then
    if type(arch) ~= "string" or not arch:find("^sm_%d+[af]?$") and not arch:find("^compute_%d+[af]?$") then
      fail(2, "%s: arch = %s is not an architecture like \"sm_90\" or \"compute_80\"", fname, show(arch))
    end
    if user_arch then fail(2, "%s: arch = %q and the option %q both set the architecture", fname, arch, user_arch) end
  elseif not user_arch then
    arch = M.default_arch()
  end
  if arch then options[#options + 1] = "--gpu-architecture=" .. arch end
  if dir then options[#options + 1] = "--include-path=" .. dir end
  local inc = find_toolkit_include()
  if inc then options[#options + 1] = "--include-path=" .. inc end

  local c_opts = ffi.new("const char *[?]", math.max(#options, 1), options)
  local c_names = ffi.new("const char *[?]", math.max(#names, 1), names)
  local c_texts = ffi.new("const char *[?]", math.max(#texts, 1), texts)
  local out = ffi.new("gs_cu_program *[1]")
  local st = C.gs_cu_compile(source, name, #names, c_texts, c_names, #options, c_opts, out, err)
  local prog = out[0]
  if prog == nil then fail(2, "%s: %s: %s", fname, name, err_text()) end
  local log = ffi.string(C.gs_cu_program_log(prog))
  local size = ffi.new("size_t[1]")
  local p = C.gs_cu_program_ptx(prog, size)
  local ptx = p ~= nil and ffi.string(p, size[0]) or nil
  p = C.gs_cu_program_cubin(prog, size)
  local cubin = p ~= nil and ffi.string(p, size[0]) or nil
  C.gs_cu_program_free(prog)
  if st ~= ST_OK then
    -- NVRTC writes "name(12): error: ..."; file:line is what editors and
    -- terminals recognise.
    local lines = {}
    for line in (log .. "\n"):gmatch("([^\n]*)\n") do
      lines[#lines + 1] = (line:gsub("^([^%s(][^(]*)%((%d+)%): ", "%1:%2: "))
    end
    local text = table.concat(lines, "\n"):gsub("%s+$", "")
    local extra = err_text() == "NVRTC_ERROR_INVALID_OPTION" and ("\noptions: " .. table.concat(options, " ")) or ""
    fail(2, "%s: %s did not compile (%s):\n%s%s", fname, name, err_text(), text, extra)
  end
  return new_module(name, {
    ptx = ptx, cubin = cubin, log = log, arch = arch or user_arch:match("=(.+)$") or user_arch, options = options,
    nvrtc = version,
  })
end

-- Loads the PTX, cubin or fatbin in the file at path into the driver now.
function M.load_module(path)
  local fname = "gs.cuda.load_module"
  if type(path) ~= "string" then fail(2, "%s: path must be a string, got %s", fname, show(path)) end
  local data, why = read_file(path)
  if not data then fail(2, "%s: cannot read %s", fname, why) end
  local kind, what = image_kind(data)
  if not kind then fail(2, "%s: %s: %s", fname, path, what) end
  local m = new_module(path, { image = data, kind = kind, ptx = kind == "ptx" and data or nil })
  m:load(2, fname .. ": " .. path)
  return m
end

-- Loads PTX text into the driver now. name: for messages (default "ptx").
function M.module_from_ptx(text, name)
  local fname = "gs.cuda.module_from_ptx"
  if type(text) ~= "string" then fail(2, "%s: text must be a string of PTX, got %s", fname, show(text)) end
  name = name or "ptx"
  if image_kind(text) ~= "ptx" then
    fail(2, "%s: %s is not PTX text (no .version and .target directives)", fname, name)
  end
  local m = new_module(name, { ptx = text, kind = "ptx" })
  m:load(2, fname .. ": " .. name)
  return m
end

-- Kernels --------------------------------------------------------------------

-- Each parameter type: its size and the C type its value is written as.
local param_types = {
  ptr = { size = 8, ctype = "void **" },
  -- integers lie in [lo, below)
  i32 = { size = 4, ctype = "int32_t *", lo = -2 ^ 31, below = 2 ^ 31 },
  u32 = { size = 4, ctype = "uint32_t *", lo = 0, below = 2 ^ 32 },
  i64 = { size = 8, ctype = "int64_t *", lo = -2 ^ 63, below = 2 ^ 63 },
  u64 = { size = 8, ctype = "uint64_t *", lo = 0, below = 2 ^ 64 },
  f32 = { size = 4, ctype = "float *", float = true },
  f64 = { size = 8, ctype = "double *", float = true },
}
local type_names = "ptr, i32, u32, i64, u64, f32, f64"

-- mod:kernel(name, {"ptr", "i64", ...}): the kernel `name` with these
-- parameter types. Where the module has PTX, the name and the parameter
-- sizes are checked against it here; the driver looks the kernel up at its
-- first launch (or now, when the module is already loaded).
function Module:kernel(name, signature)
  if getmetatable(self) ~= Module then fail(2, "kernel: call it as mod:kernel(name, signature)") end
  if type(name) ~= "string" then fail(2, "kernel: name must be a string, got %s", show(name)) end
  local what = "kernel " .. name
  if type(signature) ~= "table" then
    fail(2, "%s: the signature must be a list of parameter types (%s), got %s", what, type_names, show(signature))
  end
  local types = {}
  for i = 1, #signature do
    local ty = signature[i]
    if not param_types[ty] then
      fail(2, "%s: parameter %d has type %s; the types are %s", what, i, show(ty), type_names)
    end
    types[i] = ty
  end
  for k in pairs(signature) do
    if type(k) ~= "number" or k < 1 or k > #signature or k ~= math.floor(k) then
      fail(2, "%s: the signature must be a list, but has the key %s", what, show(k))
    end
  end
  if self._entries then
    local sizes = self._entries[name]
    if not sizes then self:_missing(name, 2) end
    if #sizes ~= #types then
      fail(2, "%s takes %d parameters (in the PTX), the signature declares %d", what, #sizes, #types)
    end
    for i, size in ipairs(sizes) do
      if size ~= param_types[types[i]].size then
        fail(2, "%s: parameter %d is %d bytes in the PTX but declared %s (%d bytes)", what, i, size, types[i],
          param_types[types[i]].size)
      end
    end
  end
  local n = #types
  local k = setmetatable({
    name = name, module = self, types = types, n = n,
    _slots = ffi.new("uint64_t[?]", math.max(n, 1)), _params = ffi.new("void *[?]", math.max(n, 1)), _views = {},
  }, Kernel)
  for i = 1, n do
    k._params[i - 1] = k._slots + (i - 1)
    k._views[i] = ffi.cast(param_types[types[i]].ctype, k._slots + (i - 1))
  end
  if self._handle then k:_function(2) end
  return k
end

function Module:_missing(name, level)
  local names = self:kernels()
  local list = names and #names > 0 and ("; its kernels: " .. table.concat(names, ", ")) or ""
  error(string.format("gs.cuda: module %s has no kernel named '%s'%s. A C++ kernel's symbol is mangled: "
    .. "declare it extern \"C\" (or pass the mangled name)", self.name, name, list), level + 1)
end

-- The CUfunction, looked up once (loading the module first).
function Kernel:_function(level)
  if self._fn then return self._fn end
  level = level + 1
  self.module:load(level, string.format("kernel %s (module %s)", self.name, self.module.name))
  local out = ffi.new("gs_cu_function *[1]")
  local st = C.gs_cu_module_function(self.module._handle, self.name, out, err)
  if st == ST_ARG then self.module:_missing(self.name, level) end
  if st ~= ST_OK then fail(level, "kernel %s: %s", self.name, err_text()) end
  self._fn = out[0]
  return self._fn
end

-- { max_threads_per_block, num_regs, static_shared_bytes } from the driver.
function Kernel:attributes()
  local fn = self:_function(2)
  local v = ffi.new("int[3]")
  if C.gs_cu_function_info(fn, v, v + 1, v + 2, err) ~= ST_OK then fail(2, "kernel %s: %s", self.name, err_text()) end
  return { max_threads_per_block = v[0], num_regs = v[1], static_shared_bytes = v[2] }
end

Kernel.__tostring = function(k)
  return string.format("gs.cuda kernel %s(%s)", k.name, table.concat(k.types, ", "))
end

-- grid or block: a number or {x[, y[, z]]} of positive integers below 2^32.
local function dims(what, name, v, out, level)
  local list
  if type(v) == "number" then list = { v }
  elseif type(v) == "table" and not T.is_tensor(v) and #v >= 1 and #v <= 3 then list = v
  else
    fail(level + 1, "kernel %s: %s must be a number or {x, y, z}, got %s", name, what, show(v))
  end
  for i = 1, 3 do
    local x = list[i] or 1
    if type(x) ~= "number" or x ~= math.floor(x) or x < 1 or x >= 2 ^ 32 then
      fail(level + 1, "kernel %s: %s%s = %s is not a positive integer below 2^32", name, what,
        type(v) == "number" and "" or ("[" .. i .. "]"), show(x))
    end
    out[i - 1] = x
  end
  return out
end

local function dims_text(d) return string.format("{%d, %d, %d}", d[0], d[1], d[2]) end

-- An integer argument as its parameter type takes it: a Lua number holding
-- an integer, or an int64_t/uint64_t cdata, inside the type's range.
local function integer_arg(name, i, ty, x, level)
  local spec = param_types[ty]
  local where = string.format("kernel %s: argument %d (%s)", name, i, ty)
  if type(x) == "cdata" and (ffi.istype("int64_t", x) or ffi.istype("uint64_t", x)) then
    local negative = ffi.istype("int64_t", x) and x < 0
    local big = ffi.istype("uint64_t", x) and x > 0x7fffffffffffffffULL
    local ok
    if ty == "i64" then ok = not big
    elseif ty == "u64" then ok = not negative
    else
      local v = tonumber(x)
      ok = not big and v >= spec.lo and v < spec.below
    end
    if not ok then fail(level + 1, "%s = %s is outside the range of %s", where, tostring(x), ty) end
    return x
  end
  if type(x) ~= "number" then
    fail(level + 1, "%s must be an integer, got %s%s", where, show(x),
      T.is_tensor(x) and " (a tensor goes to a \"ptr\" parameter)" or "")
  end
  if x ~= math.floor(x) or x - x ~= 0 then fail(level + 1, "%s = %s is not an integer", where, show(x)) end
  if x < spec.lo or x >= spec.below then
    fail(level + 1, "%s = %.17g is outside the range of %s", where, x, ty)
  end
  return x
end

local function pointer_arg(name, i, x, level)
  if T.is_tensor(x) then
    if x.device ~= "cuda" then
      fail(level + 1, "kernel %s: argument %d (ptr) is a tensor on %s; it must be on cuda (use t:to(\"cuda\"))",
        name, i, x.device)
    end
    return x:data()
  end
  if type(x) == "cdata" and tostring(ffi.typeof(x)):find("%*>$") then return x end
  fail(level + 1, "kernel %s: argument %d (ptr) must be a cuda tensor, a device pointer (cdata) or gs.cuda.null, got %s",
    name, i, show(x))
end

-- Writes the arguments into the kernel's parameter slots.
function Kernel:_pack(level, ...)
  local n = select("#", ...)
  if n ~= self.n then
    fail(level + 1, "kernel %s takes %d arguments (%s), got %d", self.name, self.n, table.concat(self.types, ", "), n)
  end
  for i = 1, n do
    local x, ty = select(i, ...), self.types[i]
    if ty == "ptr" then
      self._views[i][0] = pointer_arg(self.name, i, x, level + 1)
    elseif param_types[ty].float then
      if type(x) ~= "number" then
        fail(level + 1, "kernel %s: argument %d (%s) must be a number, got %s", self.name, i, ty, show(x))
      end
      self._views[i][0] = x
    else
      self._views[i][0] = integer_arg(self.name, i, ty, x, level + 1)
    end
  end
end

local launch_opts = { smem = true, stream = true, sync = true }
local grid_buf, block_buf = ffi.new("uint32_t[3]"), ffi.new("uint32_t[3]")
-- Arguments of launches not yet waited for, kept alive until synchronize().
local inflight, last_async = {}, nil

-- The Lua error for a failed launch or synchronize: CUDA's error name and
-- text, and what a lost context means.
local function cuda_failure(prefix, was_lost, level)
  local msg = prefix .. ": " .. err_text()
  if C.gs_cu_context_lost() ~= 0 then
    msg = msg .. (was_lost and "; the rest of this spec file cannot use the GPU" or ("; " .. LOST))
  end
  error(msg, level + 1)
end

-- k:launch(grid, block, opts, args...): grid and block are numbers or
-- {x, y, z}; opts: smem (dynamic shared memory bytes, default 0), stream (a
-- CUstream cdata, default the legacy default stream), sync (default true:
-- wait and report the kernel's errors here).
function Kernel:launch(grid, block, opts, ...)
  if getmetatable(self) ~= Kernel then fail(2, "launch: call it as k:launch(grid, block, opts, args...)") end
  opts = check_opts("kernel " .. self.name .. ": launch", opts, launch_opts, 2)
  dims("grid", self.name, grid, grid_buf, 2)
  dims("block", self.name, block, block_buf, 2)
  local smem = opts.smem or 0
  if type(smem) ~= "number" or smem ~= math.floor(smem) or smem < 0 or smem >= 2 ^ 32 then
    fail(2, "kernel %s: smem = %s is not a byte count", self.name, show(smem))
  end
  local stream = opts.stream
  if stream ~= nil and not (type(stream) == "cdata" and tostring(ffi.typeof(stream)):find("%*>$")) then
    fail(2, "kernel %s: stream must be a CUstream (a cdata pointer) or nil, got %s", self.name, show(stream))
  end
  local sync = opts.sync
  if sync == nil then sync = true end
  if type(sync) ~= "boolean" then fail(2, "kernel %s: sync must be true or false, got %s", self.name, show(sync)) end
  self:_pack(2, ...)
  local fn = self:_function(2)
  local was_lost = C.gs_cu_context_lost() ~= 0
  local st = C.gs_cu_launch(fn, grid_buf, block_buf, smem, stream, self._params, sync and 1 or 0, err)
  if st ~= ST_OK then
    local prefix = "kernel " .. self.name
    if not was_lost and C.gs_cu_context_lost() == 0 then
      -- A launch the driver refused: the configuration is the likely cause.
      local ok, info = pcall(self.attributes, self)
      prefix = string.format("kernel %s (grid %s, block %s, smem %d%s)", self.name, dims_text(grid_buf),
        dims_text(block_buf), smem, ok and ("; it takes at most " .. info.max_threads_per_block .. " threads per block") or "")
    end
    cuda_failure(prefix, was_lost, 2)
  end
  if sync then
    inflight, last_async = {}, nil
  else
    inflight[#inflight + 1] = { self, ... } -- the kernel keeps its module loaded
    last_async = self.name
  end
end

-- Waits for every kernel launched with sync = false; an error names the
-- last of them.
function M.synchronize()
  local was_lost = C.gs_cu_context_lost() ~= 0
  local st = C.gs_cu_synchronize(err)
  local after = last_async
  inflight, last_async = {}, nil
  if st ~= ST_OK then
    cuda_failure("gs.cuda.synchronize" .. (after and (" (after kernel " .. after .. ")") or ""), was_lost, 2)
  end
end

-- True once an error has left the CUDA context unusable.
function M.context_lost() return C.gs_cu_context_lost() ~= 0 end

-- The built-in cross-entropy kernels' plans: gs.cuda.plan_counts(), force_plan(), ...
for k, f in pairs(require("gradspec.cuda_plans")) do M[k] = f end

return M

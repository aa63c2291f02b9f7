-- The only cdef in gradspec: the text of src/gs_api.h, preprocessed at build
-- time and embedded in the binary, so Lua and C cannot disagree.
local ffi = require("ffi")

ffi.cdef("const char *gs_ffi_cdef(void);")
ffi.cdef(ffi.string(ffi.C.gs_ffi_cdef()))

return { ffi = ffi, C = ffi.C }

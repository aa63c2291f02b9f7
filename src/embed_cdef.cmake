# Turns the preprocessed FFI header into a C string: gs_ffi_cdef() returns it.
file(READ ${IN} text)
string(REGEX REPLACE "\\\\" "\\\\\\\\" text "${text}")
string(REGEX REPLACE "\"" "\\\\\"" text "${text}")
string(REGEX REPLACE "\n" "\\\\n\"\n\"" text "${text}")
file(WRITE ${OUT} "/* Generated from src/gs_api.h by src/embed_cdef.cmake. */\nconst char *gs_ffi_cdef(void);\nconst char *gs_ffi_cdef(void) {\n  return \"${text}\";\n}\n")

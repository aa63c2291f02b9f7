/* Host internals shared by src/ files; not part of the FFI boundary. */
#ifndef GS_HOST_H
#define GS_HOST_H

#include <lua.h>

void gs_host_set_lua_state(lua_State *L);

#endif

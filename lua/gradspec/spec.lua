-- The spec DSL, busted-shaped: loading a spec file builds a tree of
-- describe/it nodes; nothing runs until the runner walks it.
local M = {}

-- Raised by skip_if inside a running `it`.
M.SKIP = setmetatable({}, { __tostring = function() return "skip" end })

-- "#tag" words in a name are tags too, as in busted.
local function tags_of(name, opts)
  local tags = {}
  for tag in name:gmatch("#([%w_%-]+)") do tags[tag] = true end
  if type(opts) == "table" and opts.tags then
    local list = opts.tags
    if type(list) == "string" then list = { list } end
    for _, tag in ipairs(list) do tags[tag] = true end
  end
  return tags
end

local function new_node(kind, name, opts, fn, parent, line)
  return {
    kind = kind, name = name, tags = tags_of(name, opts), fn = fn, parent = parent,
    children = {}, before = {}, after = {}, setup = {}, teardown = {}, line = line, file = parent and parent.file,
  }
end

-- describe(name, [opts], fn) and it(name, [opts], fn): opts may be omitted.
local function split_args(what, name, opts, fn)
  if type(opts) == "function" and fn == nil then opts, fn = nil, opts end
  if type(name) ~= "string" then error(what .. ": the name must be a string, got " .. type(name), 3) end
  if what ~= "pending" and type(fn) ~= "function" then
    error(what .. " '" .. name .. "': the body must be a function", 3)
  end
  return name, opts, fn
end

local function caller_line()
  local info = debug.getinfo(3, "l")
  return info and info.currentline or 0
end

-- An error raised while loading a spec file, already given its place and
-- traceback by the innermost handler (a describe body inside the file).
local LoadError = {}

-- The line of the innermost stack frame that runs the file `path`.
local function line_in(path, level)
  local source = "@" .. path
  for l = level, 200 do
    local info = debug.getinfo(l, "Sl")
    if not info then break end
    if info.source == source and info.currentline and info.currentline > 0 then return info.currentline end
  end
  return nil
end

-- The message of an error raised while loading `path`, always starting with
-- path:line (error(msg, 0), error(table) and errors inside the workbench say
-- where in the file they came from), with a traceback.
local function load_error(path, e)
  if type(e) == "table" and getmetatable(e) == LoadError then return e end
  local text = tostring(e)
  local line = tonumber(text:match("^" .. path:gsub("%p", "%%%0") .. ":(%d+):"))
  if not line then
    line = line_in(path, 3)
    if line then text = string.format("%s:%d: %s", path, line, text) end
  end
  -- the traceback keeps the file's frames and the workbench's, not the
  -- loader's own (spec.lua, runner.lua, cli.lua, xpcall)
  local keep = {}
  for frame in debug.traceback("", 3):gmatch("[^\n]+") do
    if frame:match("%S") and not frame:find("^stack traceback:") and not frame:find("gradspec/spec%.lua")
      and not frame:find("gradspec/busted%.lua")
      and not frame:find("gradspec/runner%.lua") and not frame:find("gradspec/cli%.lua")
      and not frame:find("%[C%]: in function 'xpcall'") and not frame:find("%[C%]: in function 'error'") then
      keep[#keep + 1] = frame
    end
  end
  return setmetatable({ text = text .. "\nstack traceback:\n" .. table.concat(keep, "\n"), line = line }, LoadError)
end

-- Loads one spec file and returns its root node. Errors while loading
-- (syntax, a failing top-level statement) come back as root.load_error, a
-- message that starts with path:line, and root.load_line.
function M.collect(path, env_base)
  local root = new_node("file", path, nil, nil, nil, 0)
  root.file = path
  local stack = { root }
  local running = false
  local function top() return stack[#stack] end

  local dsl = {}
  function dsl.describe(name, opts, fn)
    if running then error("describe: cannot be called inside an it", 2) end
    name, opts, fn = split_args("describe", name, opts, fn)
    local node = new_node("describe", name, opts, fn, top(), caller_line())
    table.insert(top().children, node)
    stack[#stack + 1] = node
    local ok, err = xpcall(fn, function(e)
      local le = load_error(path, e) -- not a tail call: that would drop the erring frame
      return le
    end)
    stack[#stack] = nil
    if not ok then error(err, 0) end
  end
  function dsl.it(name, opts, fn)
    if running then error("it: cannot be nested inside another it", 2) end
    name, opts, fn = split_args("it", name, opts, fn)
    table.insert(top().children, new_node("it", name, opts, fn, top(), caller_line()))
  end
  function dsl.pending(name, opts)
    name = split_args("pending", name, opts, nil)
    table.insert(top().children, new_node("pending", name, opts, nil, top(), caller_line()))
  end
  function dsl.before_each(fn) table.insert(top().before, fn) end
  function dsl.after_each(fn) table.insert(top().after, fn) end
  -- Once per describe block (or file): setup before its first it, teardown
  -- after its last (see the runner). strict: also when every selected it of
  -- the block is skipped; lazy: only when one of them runs.
  local function add_hook(list, what, fn, strict)
    if running then error(what .. ": cannot be called inside an it", 3) end
    if type(fn) ~= "function" then error(what .. ": needs a function, got " .. type(fn), 3) end
    table.insert(top()[list], { fn = fn, strict = strict, what = what })
  end
  -- Cleanups of the running it, run when it ends whatever the outcome.
  local finally_list = nil
  local hooks_api = {
    setup = function(what, fn, strict) add_hook("setup", what, fn, strict) end,
    teardown = function(what, fn, strict) add_hook("teardown", what, fn, strict) end,
    finally = function(fn)
      if not running or not finally_list then error("finally: can only be called inside a running it", 3) end
      if type(fn) ~= "function" then error("finally: needs a function, got " .. type(fn), 3) end
      finally_list[#finally_list + 1] = fn
    end,
  }
  for name, f in pairs(require("gradspec.busted").dsl(hooks_api)) do dsl[name] = f end
  -- Inside a describe: skips every it of that block. Inside an it: skips it.
  function dsl.skip_if(cond, reason)
    reason = reason or "skipped"
    if not cond then return end
    if running then error({ [M.SKIP] = true, reason = reason }, 0) end
    top().skip_reason = top().skip_reason or reason
  end

  local env = setmetatable({}, { __index = function(_, k)
    local v = dsl[k]
    if v ~= nil then return v end
    return env_base[k]
  end })

  root.set_running = function(v)
    running = v
    if v then finally_list = {} end
  end
  -- The finally callbacks the running it registered, in the order to run
  -- them (the last registered first).
  root.take_finally = function()
    local out = {}
    for i = #(finally_list or {}), 1, -1 do out[#out + 1] = finally_list[i] end
    finally_list = nil
    return out
  end
  local chunk, err = loadfile(path)
  if not chunk then
    root.load_error = err
    root.load_line = tonumber(tostring(err):match(":(%d+):"))
    return root
  end
  setfenv(chunk, env)
  local ok, lerr = xpcall(chunk, function(e)
    local le = load_error(path, e)
    return le
  end)
  if not ok then root.load_error, root.load_line = lerr.text, lerr.line end
  return root
end

-- The it nodes in order, each with its full name, tags and skip reason
-- inherited from the enclosing describes, and the describes around it
-- (outermost first, the file's root node included). permute(list), when
-- given, returns the children of a block in the order to run them (a
-- shuffled run keeps each block's its together, as busted does).
function M.flatten(root, permute)
  local out = {}
  local function walk(node, names, tags, skip, chain)
    local chain_here = { unpack(chain) }
    chain_here[#chain_here + 1] = node
    local children = node.children
    if permute then children = permute(children) end
    for _, child in ipairs(children) do
      local child_names = { unpack(names) }
      child_names[#child_names + 1] = child.name
      local child_tags = {}
      for t in pairs(tags) do child_tags[t] = true end
      for t in pairs(child.tags) do child_tags[t] = true end
      local child_skip = skip or child.skip_reason
      if child.kind == "describe" then
        walk(child, child_names, child_tags, child_skip, chain_here)
      else
        out[#out + 1] = {
          node = child, full_name = table.concat(child_names, " "), tags = child_tags,
          skip_reason = child_skip, line = child.line, file = root.file, blocks = chain_here,
        }
      end
    end
  end
  walk(root, {}, {}, nil, {})
  return out
end

-- The full name of a describe block (the file's path for the root).
function M.block_name(node)
  local names = {}
  local p = node
  while p and p.kind == "describe" do
    table.insert(names, 1, p.name)
    p = p.parent
  end
  if #names == 0 then return tostring(node.file or node.name) end
  return table.concat(names, " ")
end

-- Hooks to run around one it: before_each outermost first, after_each
-- innermost first.
function M.hooks(node)
  local chain = {}
  local p = node.parent
  while p do
    table.insert(chain, 1, p)
    p = p.parent
  end
  local before, after = {}, {}
  for _, d in ipairs(chain) do
    for _, f in ipairs(d.before) do before[#before + 1] = f end
  end
  for i = #chain, 1, -1 do
    for _, f in ipairs(chain[i].after) do after[#after + 1] = f end
  end
  return before, after
end

return M

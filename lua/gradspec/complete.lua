-- Completion candidates for the REPL, in pure Lua: given the text before the
-- cursor, the words it may become. No terminal needed, so specs call it directly.
local M = {}

local KEYWORDS = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
  "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}

M.COMMANDS = { ":help", ":load", ":time", ":reload", ":quit" }

local function is_name(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

-- Indexes without letting a metamethod's error escape into the line editor.
local function field(v, k)
  local ok, r = pcall(function() return v[k] end)
  if ok then return r end
  return nil
end

-- Every name reachable on v: its own keys, then those its metatable's
-- __index tables provide (methods of tensors, of strings, the env's _G).
local function names_of(v, out, seen)
  out, seen = out or {}, seen or {}
  if seen[v] then return out end
  seen[v] = true
  if type(v) == "table" then
    for k, x in next, v do
      if is_name(k) and out[k] == nil then out[k] = x end
    end
  end
  local mt = debug.getmetatable(v)
  local index = type(mt) == "table" and rawget(mt, "__index") or nil
  if type(index) == "table" then names_of(index, out, seen) end
  return out
end

-- The value that a dotted path such as "gs.options" names in env, or nil.
local function resolve(path, env)
  local v = env
  for part in path:gmatch("[^.]+") do
    if v == nil or not is_name(part) then return nil end
    v = field(v, part)
  end
  return v
end

local function sorted_matches(names, prefix, want)
  local out = {}
  local hide_private = prefix:sub(1, 1) ~= "_"
  for k, v in pairs(names) do
    if k:sub(1, #prefix) == prefix and not (hide_private and k:sub(1, 1) == "_") and (not want or want(v)) then
      out[#out + 1] = k
    end
  end
  table.sort(out)
  return out
end

-- Splits a word at its last operator character: "1+gs.cr" -> "1+", "gs.cr".
-- Names, dots and colons stay in the word so that paths complete whole.
function M.split(text)
  local head, word = text:match("^(.-)([%w_.:]*)$")
  return head, word
end

-- Candidates for one word: a global or keyword, "a.b.prefix" (any field) or
-- "a.b:prefix" (methods only). Each candidate is the whole word completed.
function M.word_candidates(word, env)
  local path, sep, prefix = word:match("^(.*)([.:])([%w_]*)$")
  if not path then
    local list = sorted_matches(names_of(env), word)
    for _, kw in ipairs(KEYWORDS) do
      if kw:sub(1, #word) == word then list[#list + 1] = kw end
    end
    table.sort(list)
    return list
  end
  if path == "" or path:find(":", 1, true) then return {} end
  local v = resolve(path, env)
  if v == nil then return {} end
  local want = sep == ":" and function(x) return type(x) == "function" end or nil
  local out = {}
  for i, k in ipairs(sorted_matches(names_of(v), prefix, want)) do out[i] = path .. sep .. k end
  return out
end

-- Candidates for the text before the cursor as the line editor cut it out.
-- at_start: the text begins the line, where REPL commands may be typed.
-- Returns nil when the editor should complete a file name instead (:load).
function M.candidates(text, env, at_start, line)
  line = line or text
  if line:match("^%s*:load%s") then return nil end
  if at_start and text:sub(1, 1) == ":" then
    local out = {}
    for _, c in ipairs(M.COMMANDS) do
      if c:sub(1, #text) == text then out[#out + 1] = c end
    end
    return out
  end
  local head, word = M.split(text)
  local out = {}
  for i, c in ipairs(M.word_candidates(word, env)) do out[i] = head .. c end
  return out
end

return M

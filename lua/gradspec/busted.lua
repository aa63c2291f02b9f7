-- busted's spellings, for spec authors who come from busted:
--   assert.are.same, assert.are.equal, assert.truthy, assert.falsy,
--   assert.is_nil, assert.has_error (and their is/are/has/is_not/are_not/
--   has_no forms), setup/teardown (strict_setup/strict_teardown,
--   lazy_setup/lazy_teardown) and finally.
-- Each assertion is one of gradspec's own (lua/gradspec/assert.lua) called
-- with busted's argument order, so it counts as an assertion and marks what
-- it read like the rest. An assertion name that does not exist is an error
-- that lists the names close to it.
local track = require("gradspec.track")
local is_tensor = require("gradspec.tensor").is_tensor

local M = {}

local function fmt(x)
  if type(x) == "string" then return string.format("%q", x) end
  return tostring(x)
end

-- Each function below ends in a tail call of an assert.lua function, so
-- that the error it raises points at the spec's line (assert.lua reports
-- two levels above its own function).
local function spellings(A)
  local S = {}

  -- busted's order is (expected, actual); gradspec's is (actual, expected).
  function S.same(expected, actual, msg) return A.equal(actual, expected, msg) end

  -- equal: the same value (numbers, strings, booleans, a tensor's elements)
  -- or, for other tables, the same table; same compares contents.
  function S.equal(expected, actual, msg)
    local plain_tables = type(expected) == "table" and type(actual) == "table"
      and not is_tensor(expected) and not is_tensor(actual)
    if plain_tables and not rawequal(expected, actual) then
      track.mark(expected)
      track.mark(actual)
      return A.fail((msg and (msg .. "\n") or "")
        .. "assert.are.equal: two different tables (assert.are.same compares their contents)")
    end
    return A.equal(actual, expected, msg)
  end

  function S.not_same(expected, actual, msg)
    local ok = pcall(A.equal, actual, expected)
    if ok then return A.fail((msg and (msg .. "\n") or "") .. "assert.are_not.same: the values are the same: " .. fmt(actual)) end
    return A.is_true(true)
  end

  function S.not_equal(expected, actual, msg)
    local same = rawequal(expected, actual)
    if not same and type(expected) ~= "table" and type(actual) ~= "table" then same = expected == actual end
    track.mark(expected)
    track.mark(actual)
    if same then return A.fail((msg and (msg .. "\n") or "") .. "assert.are_not.equal: both are " .. fmt(actual)) end
    return A.is_true(true)
  end

  function S.truthy(v, msg)
    track.mark(v)
    if v then return A.is_true(true) end
    return A.fail((msg and (msg .. ": ") or "") .. "assert.truthy: got " .. fmt(v))
  end

  function S.falsy(v, msg)
    track.mark(v)
    if not v then return A.is_true(true) end
    return A.fail((msg and (msg .. ": ") or "") .. "assert.falsy: got " .. fmt(v))
  end

  function S.is_nil(v, msg)
    track.mark(v)
    if v == nil then return A.is_true(true) end
    return A.fail((msg and (msg .. ": ") or "") .. "assert.is_nil: got " .. fmt(v))
  end

  function S.not_nil(v, msg)
    track.mark(v)
    if v ~= nil then return A.is_true(true) end
    return A.fail((msg and (msg .. ": ") or "") .. "assert.is_not_nil: got nil")
  end

  -- has_error(fn, text): fn must raise an error whose message contains text
  -- (gradspec's assert.error).
  function S.has_error(fn, text) return A.error(fn, text) end

  function S.has_no_error(fn, msg)
    if type(fn) ~= "function" then return A.fail("assert.has_no.error: first argument must be a function, got " .. type(fn)) end
    local ok, err = pcall(fn)
    if ok then return A.is_true(true) end
    return A.fail((msg and (msg .. ": ") or "") .. "assert.has_no.error: the function raised: " .. tostring(err))
  end

  return S
end

-- The namespaces (assert.are.same) and the flat names (assert.are_same):
-- which spelling calls which function.
local NAMESPACES = {
  are = { same = "same", equal = "equal", equals = "equal", truthy = "truthy", falsy = "falsy" },
  is = { same = "same", equal = "equal", truthy = "truthy", falsy = "falsy", ["nil"] = "is_nil",
    is_true = "is_true", is_false = "is_false" },
  has = { error = "has_error", errors = "has_error" },
  are_not = { same = "not_same", equal = "not_equal", equals = "not_equal" },
  is_not = { same = "not_same", equal = "not_equal", ["nil"] = "not_nil", truthy = "falsy", falsy = "truthy" },
  has_no = { error = "has_no_error", errors = "has_no_error" },
}

local FLAT = {
  same = "same", are_same = "same", is_same = "same",
  are_equal = "equal", is_equal = "equal", equals = "equal", are_equals = "equal",
  are_not_same = "not_same", is_not_same = "not_same",
  are_not_equal = "not_equal", is_not_equal = "not_equal",
  truthy = "truthy", is_truthy = "truthy", falsy = "falsy", is_falsy = "falsy",
  is_nil = "is_nil", is_not_nil = "not_nil",
  has_error = "has_error", has_errors = "has_error", errors = "has_error",
  has_no_error = "has_no_error", has_no_errors = "has_no_error",
}

-- Edit distance, for the names an unknown one is close to.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- The names of `names` closest to `name`: within 2 edits, or sharing a
-- prefix of 3 or more characters either way, closest first (at most 6).
local function close_names(name, names)
  local scored = {}
  for _, n in ipairs(names) do
    local d = distance(name:lower(), n:lower())
    local prefix = #name >= 3 and (n:sub(1, #name) == name or name:sub(1, #n) == n or n:find(name, 1, true))
    if d <= 2 or prefix then scored[#scored + 1] = { n = n, d = d } end
  end
  table.sort(scored, function(x, y)
    if x.d ~= y.d then return x.d < y.d end
    return x.n < y.n
  end)
  local out = {}
  for i = 1, math.min(6, #scored) do out[i] = scored[i].n end
  return out
end

local function unknown(prefix, key, names)
  table.sort(names)
  local close = close_names(key, names)
  local msg = string.format("%s%s is not an assertion", prefix, key)
  if #close > 0 then
    for i, n in ipairs(close) do close[i] = prefix .. n end
    msg = msg .. "; did you mean " .. table.concat(close, ", ") .. "?"
  else
    for i, n in ipairs(names) do names[i] = prefix .. n end
    msg = msg .. "; the assertions are " .. table.concat(names, ", ")
  end
  return msg
end

-- A namespace table (assert.are): its functions, and an error naming the
-- close ones for any other name.
local function namespace(name, map, S, A)
  local ns = {}
  local names = {}
  for k, target in pairs(map) do
    ns[k] = S[target] or A[target]
    names[#names + 1] = k
  end
  return setmetatable(ns, {
    __index = function(t, key)
      if type(key) ~= "string" or key:sub(1, 1) == "_" then return nil end
      -- busted's names are case-insensitive (assert.is_not.Nil: nil is a keyword)
      local v = rawget(t, key:lower())
      if v ~= nil then return v end
      local copy = { unpack(names) }
      error(unknown("assert." .. name .. ".", key, copy), 2)
    end,
  })
end

-- Adds the spellings to the assertion table A (gs.assert) and makes an
-- unknown name an error listing the close ones. Safe to call more than once.
function M.install(A)
  if rawget(A, "_busted") then return A end
  local S = spellings(A)
  for name, target in pairs(FLAT) do
    if rawget(A, name) == nil then rawset(A, name, S[target]) end
  end
  for name, map in pairs(NAMESPACES) do
    rawset(A, name, namespace(name, map, S, A))
  end
  rawset(A, "_busted", true)
  local mt = getmetatable(A) or {}
  mt.__index = function(t, key)
    -- fields starting with "_" are probes of internals: absent is nil
    if type(key) ~= "string" or key:sub(1, 1) == "_" then return nil end
    local v = rawget(t, key:lower())
    if v ~= nil then return v end
    local names = {}
    for k, v in pairs(t) do
      if type(k) == "string" and k:sub(1, 1) ~= "_" and (type(v) == "function" or type(v) == "table")
        and k ~= "tolerances" and k ~= "smallest_normal" and not k:match("^[a-z_]*count") and k ~= "note"
        and k ~= "take_notes" and k ~= "reset_count" then
        names[#names + 1] = k
      end
    end
    error(unknown("assert.", key, names), 2)
  end
  setmetatable(A, mt)
  return A
end

-- The block-level DSL words, built on the hooks spec.lua provides:
-- api.setup(what, fn, strict), api.teardown(what, fn, strict), api.finally(fn).
-- setup and teardown are the strict ones, as in busted.
function M.dsl(api)
  return {
    setup = function(fn) api.setup("setup", fn, true) end,
    teardown = function(fn) api.teardown("teardown", fn, true) end,
    strict_setup = function(fn) api.setup("strict_setup", fn, true) end,
    strict_teardown = function(fn) api.teardown("strict_teardown", fn, true) end,
    lazy_setup = function(fn) api.setup("lazy_setup", fn, false) end,
    lazy_teardown = function(fn) api.teardown("lazy_teardown", fn, false) end,
    finally = function(fn) api.finally(fn) end,
  }
end

return M

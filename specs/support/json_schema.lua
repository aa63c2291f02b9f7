-- A validator for the part of JSON Schema (2020-12) that
-- specs/fixtures/json/run.schema.json uses, so that specs can check
-- gradspec's JSON output with nothing installed beyond gradspec.
--
-- decode(text) is gradspec.json's strict decoder: the value (objects and
-- arrays are tables; null is M.null; an array is marked so that [] and {}
-- stay apart), or nil and a message with the byte offset. read(path)
-- decodes a file. validate(value, schema) returns a list of
-- errors, each "path: what is wrong" (empty when the value is valid).
-- Keywords: type (a name or a list; "integer" is a number without a
-- fraction), enum, const, minimum, minLength, properties, required,
-- additionalProperties (false or a schema), items, $ref (to "#/$defs/..."),
-- $defs; the annotations $schema, $id, title, description and $comment are
-- ignored. Any other keyword is an error: a schema must not rely on one
-- this validator would skip.
local json = require("gradspec.json")

local M = {}

M.null = json.null
M.decode = json.decode
local is_array, is_object = json.is_array, json.is_object

local function type_of(v)
  if v == M.null then return "null" end
  local t = type(v)
  if t == "boolean" or t == "string" then return t end
  if t == "number" then return "number" end
  if is_array(v) then return "array" end
  if is_object(v) then return "object" end
  return t
end

local function has_type(v, name)
  local t = type_of(v)
  if name == "integer" then return t == "number" and v == math.floor(v) and v == v end
  return t == name
end

local function equal(a, b)
  if type_of(a) ~= type_of(b) then return false end
  if type(a) ~= "table" or a == M.null then return a == b end
  for k, x in pairs(a) do
    if not equal(x, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local IGNORED = { ["$schema"] = true, ["$id"] = true, title = true, description = true, ["$comment"] = true,
  ["$defs"] = true }
local KNOWN = { type = true, enum = true, const = true, minimum = true, minLength = true, properties = true,
  required = true, additionalProperties = true, items = true, ["$ref"] = true }

local function show(v)
  local t = type_of(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" or t == "boolean" or t == "null" then return tostring(v) end
  return t
end

function M.validate(value, schema)
  local errors = {}
  local root = schema
  local function check(v, s, path)
    for k in pairs(s) do
      if not KNOWN[k] and not IGNORED[k] then
        errors[#errors + 1] = path .. ": the schema uses the keyword " .. k .. ", which this validator does not implement"
      end
    end
    if s["$ref"] then
      local name = s["$ref"]:match("^#/%$defs/([%w_]+)$")
      local target = name and root["$defs"] and root["$defs"][name]
      if not target then
        errors[#errors + 1] = path .. ": cannot resolve $ref " .. tostring(s["$ref"])
        return
      end
      check(v, target, path)
    end
    if s.type then
      local types = type(s.type) == "table" and s.type or { s.type }
      local ok = false
      for _, name in ipairs(types) do
        if has_type(v, name) then ok = true end
      end
      if not ok then
        local names = {}
        for i, name in ipairs(types) do names[i] = name end
        errors[#errors + 1] = string.format("%s: %s is not of type %s", path, show(v), table.concat(names, " or "))
        return
      end
    end
    if s.const ~= nil and not equal(v, s.const) then
      errors[#errors + 1] = string.format("%s: %s is not %s", path, show(v), show(s.const))
    end
    if s.enum then
      local ok = false
      for _, x in ipairs(s.enum) do
        if equal(v, x) then ok = true end
      end
      if not ok then
        local names = {}
        for i, x in ipairs(s.enum) do names[i] = show(x) end
        errors[#errors + 1] = string.format("%s: %s is not one of %s", path, show(v), table.concat(names, ", "))
      end
    end
    local t = type_of(v)
    if t == "number" and s.minimum and v < s.minimum then
      errors[#errors + 1] = string.format("%s: %s is below the minimum %s", path, show(v), tostring(s.minimum))
    end
    if t == "string" and s.minLength then
      -- characters, not bytes: count the bytes that do not continue a sequence
      local _, chars = v:gsub("[^\128-\191]", "")
      if chars < s.minLength then
        errors[#errors + 1] = string.format("%s: %s is shorter than %d", path, show(v), s.minLength)
      end
    end
    if t == "object" then
      for _, k in ipairs(s.required or {}) do
        if v[k] == nil then errors[#errors + 1] = path .. ": missing the required property " .. k end
      end
      local props = s.properties or {}
      for k, x in pairs(v) do
        local sub = props[k]
        if sub then
          check(x, sub, path .. "." .. k)
        elseif s.additionalProperties == false then
          errors[#errors + 1] = path .. ": property " .. k .. " is not allowed"
        elseif type(s.additionalProperties) == "table" then
          check(x, s.additionalProperties, path .. "." .. k)
        end
      end
    end
    if t == "array" and s.items then
      for i, x in ipairs(v) do check(x, s.items, string.format("%s[%d]", path, i - 1)) end
    end
  end
  check(value, schema, "$")
  return errors
end

-- Reads and decodes a JSON file; errors name the file.
function M.read(path)
  local f = assert(io.open(path, "r"))
  local text = f:read("*a")
  f:close()
  local v, err = M.decode(text)
  if v == nil then error(path .. ": " .. err, 2) end
  return v
end

M.is_array, M.is_object = is_array, is_object

return M
